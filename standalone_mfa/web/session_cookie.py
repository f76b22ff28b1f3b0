"""Flask's `session` is our server-side session (`signin.sessions`): this reads its
cookie at the start of a request and sets it at the end, and tells the session which
browser it is talking to (`client()`)."""

from __future__ import annotations

from flask import g, request
from flask.sessions import SessionInterface

from ..core.audit import Client
from ..core.clock import now
from ..core.db import UNAVAILABLE
from ..signin import sessions
from ..signin.sessions import ServerSession
from .cookies import cookie_policy

# Never load (nor touch, nor create) a session here: the health probe answers for the
# database alone, even to a browser that sends its cookie.
SESSIONLESS_PATHS = frozenset({"/healthz"})


def client() -> Client:
    """The address (as ProxyFix decided it) and browser of the current request."""
    agent = request.user_agent.string or None
    return Client(request.remote_addr, agent[:255] if agent else None)


class ServerSessionInterface(SessionInterface):
    def get_cookie_name(self, app) -> str:
        # Decided per request: the same app may be reached over HTTPS through a proxy.
        return cookie_policy().name(app.config["SESSION_COOKIE_NAME"])

    def open_session(self, app, request) -> ServerSession:
        if request.path.startswith(app.static_url_path + "/") or request.path in SESSIONLESS_PATHS:
            return ServerSession()
        token = request.cookies.get(self.get_cookie_name(app))
        try:
            return sessions.load(token, now(), client())
        except UNAVAILABLE as exc:
            g.database_error = exc
            return ServerSession(client=client())

    def save_session(self, app, session: ServerSession, response) -> None:
        response.vary.add("Cookie")
        token = sessions.save(session, now())
        if token:
            cookie_policy().set(response, app.config["SESSION_COOKIE_NAME"], token)
