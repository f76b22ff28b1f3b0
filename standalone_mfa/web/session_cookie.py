"""Flask's `session` is our server-side session (`signin.sessions`): this reads its
cookie at the start of a request and sets it at the end, and tells the session which
browser it is talking to (`client()`).

An anonymous session has no row: what it keeps (the CSRF secret, flashed messages)
travels in a second cookie, `ANONYMOUS_COOKIE`, signed with SECRET_KEY (itsdangerous,
as Flask's own cookie sessions; readable, not secret) and dated by the app's clock. A
cookieless visit touches no database. When the password step gives the session a row,
the data moves into it and this cookie is deleted; when a session goes back to
anonymous, its row is deleted and the data comes back here.

Both cookies have the shared scope (`cookies.shared_cookie_policy`: all of
`SESSION_COOKIE_DOMAIN` when set), and are read and deleted under the name and
attributes they were set with, so that a browser really drops them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import current_app, g, request
from flask.sessions import SessionInterface
from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from ..core.audit import Client
from ..core.clock import now
from ..core.config import setting
from ..core.db import UNAVAILABLE
from ..signin import sessions
from ..signin.sessions import LAST_SEEN_RESOLUTION, ServerSession
from .cookies import shared_cookie_policy
from .sessionless import is_sessionless

ANONYMOUS_COOKIE = "smfa_anon"
_ANONYMOUS_SALT = "standalone-mfa.anonymous-session"  # this cookie's own key


class _ClockSigner(TimestampSigner):
    """Dates what it signs by the app's clock (tests freeze it), not the system's."""

    def get_timestamp(self) -> int:
        return int(now().timestamp())


@dataclass(frozen=True)
class AnonymousCookie:
    """What this request's anonymous cookie was: when it was signed (None: no valid
    one)."""

    signed_at: int | None


def _anonymous_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.secret_key,
        salt=_ANONYMOUS_SALT,
        signer=_ClockSigner,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )


def _anonymous_max_age() -> int:
    # An anonymous session lives as long as an idle one with a row did.
    return setting("SESSION_IDLE_TIMEOUT")


def read_anonymous_cookie() -> tuple[dict, int | None]:
    """What this browser's anonymous cookie keeps, and when it was signed; ({}, None)
    if there is none, or it is tampered with, expired or malformed."""
    value = request.cookies.get(shared_cookie_policy().name(ANONYMOUS_COOKIE))
    if not value or len(value) > 4096:
        return {}, None
    try:
        data, signed_at = _anonymous_serializer().loads(
            value, max_age=_anonymous_max_age(), return_timestamp=True
        )
    except BadData:
        return {}, None
    if not isinstance(data, dict):
        return {}, None
    return data, int(signed_at.timestamp())


def client() -> Client:
    """The address (as ProxyFix decided it) and browser of the current request."""
    agent = request.user_agent.string or None
    return Client(request.remote_addr, agent[:255] if agent else None)


class ServerSessionInterface(SessionInterface):
    def get_cookie_name(self, app) -> str:
        # Decided per request: the same app may be reached over HTTPS through a proxy.
        return shared_cookie_policy().name(setting("SESSION_COOKIE_NAME", app))

    def open_session(self, app, request) -> ServerSession:
        if is_sessionless(request.path):  # never loaded, touched, created nor set
            return ServerSession()
        token = request.cookies.get(self.get_cookie_name(app))
        anonymous, signed_at = read_anonymous_cookie()
        g.anonymous_cookie = AnonymousCookie(signed_at)
        try:
            return sessions.load(token, now(), client(), anonymous)
        except UNAVAILABLE as exc:
            g.database_error = exc
            return ServerSession(client=client())

    def save_session(self, app, session: ServerSession, response) -> None:
        response.vary.add("Cookie")
        token = sessions.save(session, now())
        policy = shared_cookie_policy()
        if token:
            policy.set(response, setting("SESSION_COOKIE_NAME", app), token)
        sent = g.get("anonymous_cookie")
        if session.discarded or sent is None:  # a failed or a sessionless request
            return
        if session.row_dropped:
            # Signed out or expired here: the row is gone, so is its cookie.
            policy.delete(response, setting("SESSION_COOKIE_NAME", app))
        anonymous_sent = policy.name(ANONYMOUS_COOKIE) in request.cookies
        if session.has_row:
            if anonymous_sent:  # its data moved into the row
                policy.delete(response, ANONYMOUS_COOKIE)
            return
        data = session.anonymous_data()
        if not data:
            if anonymous_sent and (session.modified or sent.signed_at is None):
                policy.delete(response, ANONYMOUS_COOKIE)  # emptied, or not ours
            return
        stale = sent.signed_at is None or now().timestamp() - sent.signed_at >= (
            LAST_SEEN_RESOLUTION.total_seconds()
        )
        if session.modified or stale:  # re-signed once a minute while in use
            policy.set(
                response,
                ANONYMOUS_COOKIE,
                _anonymous_serializer().dumps(data),
                max_age=_anonymous_max_age(),
            )
