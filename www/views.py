from django.views.generic import ListView

from www.models import Announcement


class HomeView(ListView):
    template_name = "home.html"
    context_object_name = "announcements"
    queryset = Announcement.objects.filter(published=True)[:5]
