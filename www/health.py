"""/health: answers before host validation, since load balancers probe by IP."""

from django.db import DatabaseError, connection
from django.http import JsonResponse

HEALTH_PATH = "/health"


def database_ok():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        connection.close()  # reconnect on the next probe instead of reusing a dead socket
        return False


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != HEALTH_PATH:
            return self.get_response(request)
        if database_ok():
            return JsonResponse({"status": "ok", "database": "ok"})
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
