from django.db import models


class Announcement(models.Model):
    """A note on the home page, written in the admin: the page's database-backed part."""

    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    published = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.title
