from django.contrib import admin

from www.models import Announcement


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    list_display = ["title", "published", "created"]
    list_filter = ["published"]
