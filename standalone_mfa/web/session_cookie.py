"""Flask's `session` is our server-side session (`signin.sessions`): this reads its
cookie at the start of a request and sets it at the end, and tells the session which
browser it is talking to (`client()`).

An anonymous session has no row: what it keeps (the CSRF secret, flashed messages)
travels in a second cookie, `ANONYMOUS_COOKIE`, signed with SECRET_KEY (itsdangerous,
as Flask's own cookie sessions; readable, not secret) and dated by the app's clock. A
cookieless visit touches no database. When the password step gives the session a row,
the data moves into it and this cookie is deleted; when a session goes back to
anonymous, its row is deleted and the data comes back here.

The session cookie has the shared scope (`cookies.shared_cookie_policy`: all of
`SESSION_COOKIE_DOMAIN` when set), so that the apps behind the gateway receive it. The
anonymous cookie is the portal's alone (`cookies.portal_cookie_policy`, `__Host-` over
HTTPS): no app needs it, and no sibling subdomain can plant one whose CSRF secret it
knows (SC-68). Each is read and deleted under the name and attributes it was set with,
so that a browser really drops it. A name sent twice is read as absent (SC-68).

With `SESSION_COOKIE_DOMAIN`, every app behind the gateway receives the session
cookie; the portal opens the session only with its binding cookie too
(`cookies.is_bound`, SC-67), which is set beside each new token. Without it the
browser is anonymous here (it signs in again, and the session it held then ends); it
can still sign that session out (`end_unbound_session`), so that signing out always
ends what the apps accept.
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
from ..signin import sessions, steps
from ..signin.sessions import LAST_SEEN_RESOLUTION, ServerSession
from .cookies import (
    binding_required,
    delete_binding_cookie,
    is_bound,
    portal_cookie_policy,
    set_binding_cookie,
    shared_cookie_policy,
    single_cookie,
)
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
    value = single_cookie(portal_cookie_policy().name(ANONYMOUS_COOKIE))
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


def unbound_token() -> str | None:
    """The session token this browser sent without its binding cookie, if it did: the
    portal treats it as signed out, the gateway does not."""
    return g.get("unbound_token")


def end_unbound_session() -> None:
    """Sign out the session this browser holds but cannot open here (no binding), and
    drop its cookie: a sign-out must end what the apps accept."""
    token = g.pop("unbound_token", None)
    if token is not None:
        steps.sign_out_token(token, now(), client())
        g.drop_session_cookie = True


def client() -> Client:
    """The address (as ProxyFix decided it) and browser of the current request."""
    asked = request._get_current_object()
    agent = asked.headers.get("User-Agent")  # the string alone: no UserAgent object
    return Client(asked.remote_addr, agent[:255] if agent else None)


def _vary_on_cookie(response) -> None:
    """`Vary: Cookie`, as Flask's sessions add it; set directly when the response has
    no Vary yet (every page's case), which spares parsing and re-writing the header."""
    if "Vary" in response.headers:
        response.vary.add("Cookie")
    else:
        response.headers["Vary"] = "Cookie"


class ServerSessionInterface(SessionInterface):
    def get_cookie_name(self, app) -> str:
        # Decided per request: the same app may be reached over HTTPS through a proxy.
        return shared_cookie_policy().name(setting("SESSION_COOKIE_NAME", app))

    def open_session(self, app, request) -> ServerSession:
        if is_sessionless(request.path):  # never loaded, touched, created nor set
            return ServerSession()
        token = single_cookie(self.get_cookie_name(app))
        context = g._get_current_object()
        if token and binding_required() and not is_bound(token):
            context.unbound_token, token = token, None
        anonymous, signed_at = read_anonymous_cookie()
        context.anonymous_cookie = AnonymousCookie(signed_at)
        try:
            return sessions.load(token, now(), client(), anonymous)
        except UNAVAILABLE as exc:
            context.database_error = exc
            return ServerSession(client=client())

    def save_session(self, app, session: ServerSession, response) -> None:
        context = g._get_current_object()  # not through the proxy at each use
        _vary_on_cookie(response)
        token = sessions.save(session, now())
        policy = shared_cookie_policy()
        if token:
            policy.set(response, setting("SESSION_COOKIE_NAME", app), token)
            if binding_required():
                set_binding_cookie(response, token)
            # This browser's cookie now names another session: the one it held
            # without a binding ends (whoever else holds a copy of it is cut off).
            end_unbound_session()
        sent = context.get("anonymous_cookie")
        if session.discarded or sent is None:  # a failed or a sessionless request
            return
        if session.row_dropped or (context.pop("drop_session_cookie", False) and not token):
            # Signed out or expired here: the row is gone, so is its cookie.
            policy.delete(response, setting("SESSION_COOKIE_NAME", app))
            if binding_required():
                delete_binding_cookie(response)
        anonymous = portal_cookie_policy()
        anonymous_sent = anonymous.name(ANONYMOUS_COOKIE) in request._get_current_object().cookies
        if session.has_row:
            if anonymous_sent:  # its data moved into the row
                anonymous.delete(response, ANONYMOUS_COOKIE)
            return
        data = session.anonymous_data()
        if not data:
            if anonymous_sent and (session.modified or sent.signed_at is None):
                anonymous.delete(response, ANONYMOUS_COOKIE)  # emptied, or not ours
            return
        stale = sent.signed_at is None or now().timestamp() - sent.signed_at >= (
            LAST_SEEN_RESOLUTION.total_seconds()
        )
        if session.modified or stale:  # re-signed once a minute while in use
            anonymous.set(
                response,
                ANONYMOUS_COOKIE,
                _anonymous_serializer().dumps(data),
                max_age=_anonymous_max_age(),
            )
