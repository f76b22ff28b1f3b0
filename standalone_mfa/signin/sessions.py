"""Server-side browser sessions behind Flask's `session`.

The cookie carries one opaque random token (256 bits); the database keeps only its
SHA-256, with the sign-in state, the user, the pending set-up secret (encrypted) and
the small data Flask keeps in a session (CSRF token, flashed messages). Idle and
absolute lifetimes are enforced here, on the server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json

from flask import current_app, g, request
from flask.sessions import SessionInterface, SessionMixin
from peewee import JOIN
from werkzeug.datastructures import CallbackDict

from ..core import crypto
from ..core.clock import now
from ..core.db import UNAVAILABLE, write_transaction
from ..core.models import User, WebSession
from ..web.cookies import cookie_policy

ANONYMOUS = "anonymous"  # the state of a session that has no row yet (see `state`)
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)
CSRF_KEY = "csrf_token"  # where Flask-WTF keeps the session's CSRF secret
# Never load (nor touch, nor create) a session here: the health probe answers for the
# database alone, even to a browser that sends its cookie.
SESSIONLESS_PATHS = frozenset({"/healthz"})


class ServerSession(CallbackDict, SessionMixin):
    """Flask's session dict, plus the row it was loaded from.

    Changes to the row are kept in memory and written by `write()`: at the end of the
    request, or earlier inside the transaction of the change that caused them. A
    request that fails writes nothing (`discard()`)."""

    def __init__(self, record: WebSession | None = None, data: dict | None = None):
        def on_update(session):
            session.modified = True

        super().__init__(data or {}, on_update)
        self.record = record
        self.stored_hash = record.token_hash if record else None  # what the row holds now
        self.new_token: str | None = None  # to send as the cookie
        self.record_changed = False
        self.discarded = False
        self.modified = False

    @property
    def state(self) -> str:
        return self.record.state if self.record else ANONYMOUS

    @property
    def user(self) -> User | None:
        return self.record.user if self.record and self.record.user_id else None

    def ensure_record(self) -> WebSession:
        if self.record is None:
            at = now()
            self.record = WebSession(
                state=ANONYMOUS, created_at=at, state_since=at, last_seen_at=at
            )
            self.record.ip, self.record.user_agent = _client()
            self._new_id()
        return self.record

    def rotate(self) -> None:
        """Give the session a new id; the old cookie stops working when this is written.

        The CSRF token goes too: one seen before sign-in (say, in a session an attacker
        planted) must not be valid in the signed-in session."""
        self._new_id()
        self.pop(CSRF_KEY, None)

    def _new_id(self) -> None:
        self.new_token = crypto.new_token()
        self.record.token_hash = crypto.hash_token(self.new_token)
        self.record_changed = True

    def changed(self) -> None:
        self.record_changed = True

    def write(self) -> bool:
        """Write the row now. Only a row that still has the id this request was given
        is updated: a session ended or rotated meanwhile (sign-out, admin reset) stays
        ended, this request's new cookie is not sent, and the answer is False."""
        record = self.ensure_record()
        record.data = json.dumps(dict(self), separators=(",", ":"))
        if self.stored_hash is None:
            record.save(force_insert=True)
        else:
            fields = {f: getattr(record, f) for f in _SAVED_FIELDS}
            fields["user"] = record.user_id
            updated = (
                WebSession.update(**fields)
                .where((WebSession.id == record.id) & (WebSession.token_hash == self.stored_hash))
                .execute()
            )
            if not updated:
                self.new_token = None
                self.discarded = True
                return False
        self.stored_hash = record.token_hash
        self.record_changed = self.modified = False
        return True

    def discard(self) -> None:
        """Forget what this request changed: nothing more is written."""
        self.discarded = True


class ServerSessionInterface(SessionInterface):
    def get_cookie_name(self, app) -> str:
        # Decided per request: the same app may be reached over HTTPS through a proxy.
        return cookie_policy().name(app.config["SESSION_COOKIE_NAME"])

    def open_session(self, app, request) -> ServerSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if (
            not token
            or len(token) > 128
            or request.path.startswith(app.static_url_path + "/")
            or request.path in SESSIONLESS_PATHS
        ):
            return ServerSession()
        try:
            record = _load(crypto.hash_token(token))
        except UNAVAILABLE as exc:
            g.database_error = exc
            return ServerSession()
        if record is None:
            return ServerSession()
        try:
            data = json.loads(record.data)
        except ValueError:
            data = {}
        return ServerSession(record, data)

    def save_session(self, app, session: ServerSession, response) -> None:
        response.vary.add("Cookie")
        if session.discarded or (session.record is None and not session.modified):
            return
        record = session.ensure_record()
        at = now()
        touch = at - record.last_seen_at >= LAST_SEEN_RESOLUTION
        if touch:
            record.last_seen_at = at
        if session.modified or session.record_changed or touch:
            session.write()
        if session.new_token:
            self._set_cookie(app, response, session.new_token)

    def _set_cookie(self, app, response, token: str) -> None:
        cookie_policy().set(response, app.config["SESSION_COOKIE_NAME"], token)


_SAVED_FIELDS = (
    "token_hash",
    "state",
    "state_since",
    "last_seen_at",
    "data",
    "next_url",
    "pending_secret_encrypted",
    "second_factor_at",
    "step_up_at",
)


def _load(token_hash: str) -> WebSession | None:
    record = (
        WebSession.select(WebSession, User)
        .join(User, JOIN.LEFT_OUTER)
        .where(WebSession.token_hash == token_hash)
        .get_or_none()
    )
    if record is None:
        return None
    at = now()
    config = current_app.config
    idle = dt.timedelta(seconds=config["SESSION_IDLE_TIMEOUT"])
    absolute = dt.timedelta(seconds=config["SESSION_ABSOLUTE_TIMEOUT"])
    if at - record.last_seen_at > idle or at - record.created_at > absolute:
        WebSession.delete().where(WebSession.id == record.id).execute()
        return None
    return record


def _client() -> tuple[str | None, str | None]:
    agent = request.user_agent.string or None
    return request.remote_addr, agent[:255] if agent else None


class SessionEnded(Exception):
    """The session was ended by another request (sign-out, admin reset) meanwhile."""


@contextlib.contextmanager
def transition(web_session: ServerSession):
    """A write transaction for a change and the session state it leads to: both are
    committed, or neither (and the request then writes nothing more)."""
    try:
        with write_transaction():
            yield
            if not web_session.write():
                raise SessionEnded()
    except BaseException:
        web_session.discard()
        raise


def end_sessions_of(user: User) -> int:
    """Delete every browser session of a user (admin reset, password change)."""
    return WebSession.delete().where(WebSession.user == user).execute()
