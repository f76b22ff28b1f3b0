"""A small Django project that signs its users in from the gateway's `Remote-User`
(django.contrib.auth's RemoteUserMiddleware and RemoteUserBackend, as Django's
"Authentication using REMOTE_USER" how-to sets them up behind a proxy), for
tests/e2e/test_gateway_apps.py. Served by `manage.py runserver`'s own server."""
