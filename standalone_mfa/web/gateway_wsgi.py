"""The gateway's checks (`GET /auth/nginx`, `GET /auth/forward`), and OpenID Connect's
two hot sessionless endpoints (`/userinfo`, `POST /token`), on a lean WSGI path.

They answer every request of every protected app, so they skip what Flask runs for a
page and a check does not need: saving a session (the session interface gives a check
an empty one; it reads the cookie itself), the sign-in guard, the CSRF check,
Flask-Login, the mail sender, and the per-hook bookkeeping of Flask's dispatch. What
they keep, in the same order as on a page: a request context (so the views in
`gateway` run unchanged: the decision is still `gateway.check`'s, the answer still
`gateway._answer`'s), the schema check, the body limit, the request's timing for
`/metrics`, the security headers, the app's error handlers (a database that is down
still answers 503), and the connection given back at the end. Any other path or
method goes through Flask as before.
"""

from __future__ import annotations

import time

from flask import Flask

from ..core import metrics
from . import errors

# PATH_INFO (below the mount point) -> (endpoint, methods); views looked up by name.
_GET = frozenset({"GET", "HEAD"})
CHECK_PATHS = {
    "/auth/nginx": ("gateway.nginx", _GET),
    "/auth/forward": ("gateway.forward", _GET),
    # No cookie read, no session, no CSRF (the client's own credentials): the same
    # lean path; their views set their own CORS header.
    "/userinfo": ("oidc_api.userinfo", frozenset({"GET", "POST"})),
    "/token": ("oidc_api.token", frozenset({"POST"})),
}


class GatewayChecks:
    """WSGI middleware in front of Flask's own `wsgi_app` (under any ProxyFix, so the
    client's address, scheme and host are already the ones the proxy vouched for)."""

    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        endpoint, methods = CHECK_PATHS.get(environ.get("PATH_INFO", ""), (None, ()))
        if endpoint is None or environ.get("REQUEST_METHOD") not in methods:
            return self.wsgi_app(environ, start_response)
        return self._check(endpoint, environ, start_response)

    def _check(self, endpoint: str, environ, start_response):
        app = self.app
        started = time.perf_counter()
        context = app.request_context(environ)
        context.push()  # the session interface answers a check with an empty session
        try:
            try:
                errors.refuse_if_schema_mismatch()
                errors.refuse_oversized_body()
                response = app.make_response(app.view_functions[endpoint]())
            except Exception as exc:  # noqa: BLE001 - the app's own handlers decide
                response = app.make_response(app.handle_user_exception(exc))
            response = errors.security_headers(response)
            response.vary.add("Cookie")  # as Flask adds it: the answer depends on it
            return response(environ, start_response)
        finally:
            metrics.request_finished(endpoint, time.perf_counter() - started)
            context.pop()  # the teardowns: the connection goes back to the pool


def init_app(app: Flask) -> None:
    """Put the checks' lean path under whatever wraps Flask's `wsgi_app` already."""
    app.wsgi_app = GatewayChecks(app, app.wsgi_app)
