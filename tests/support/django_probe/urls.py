"""The probe's middleware and pages: `/notes/<name>/` is <name>'s own (403 for anyone
else), every other path answers who Django thinks is signed in and what it saw."""

from django.contrib.auth.middleware import RemoteUserMiddleware
from django.http import JsonResponse
from django.urls import path, re_path


class GatewayUserMiddleware(RemoteUserMiddleware):
    # The proxy's header, not the WSGI server's REMOTE_USER (Django's how-to).
    header = "HTTP_REMOTE_USER"


def _seen(request, **extra):
    user = request.user.username if request.user.is_authenticated else None
    return {
        "app": "django",
        "user": user,
        "path": request.path,
        **extra,
        "cookies": sorted(request.COOKIES),
    }


def notes(request, name):
    status = 200 if request.user.is_authenticated and request.user.username == name else 403
    return JsonResponse(_seen(request, owner=name), status=status)


def anything(request, rest=""):
    area = "admin" if request.path.split("/")[1:2] == ["admin"] else "public"
    return JsonResponse(_seen(request, area=area))


urlpatterns = [
    path("notes/<str:name>/", notes),
    re_path(r"^(?P<rest>.*)$", anything),
]
