"""Settings of the probe project (the database path from DJANGO_PROBE_DB)."""

import os

SECRET_KEY = "tests only: " + "x" * 40
DEBUG = False
ALLOWED_HOSTS = [".example.test", "127.0.0.1"]
ROOT_URLCONF = "django_probe.urls"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_probe.urls.GatewayUserMiddleware",
]
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.RemoteUserBackend"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_PROBE_DB"]}
}
LOGGING = {"version": 1, "disable_existing_loggers": True}
