"""Server-side browser sessions behind Flask's `session`.

A session gets a row only once a password is accepted (`state.fire` calls
`ensure_record`), and loses it when it goes back to anonymous (sign-out, expiry): an
anonymous browser's small data (CSRF secret, flashed messages, `ANONYMOUS_KEYS`) is
kept by the web layer in a signed cookie, so cookieless visitors and failed sign-ins
never write a row. The session cookie carries one opaque random token (256 bits);
the database keeps only its SHA-256, with the sign-in state, the user, the pending
set-up secret (encrypted) and the small data Flask keeps in a session. Idle and
absolute lifetimes (`lifetimes`) are enforced when a session is loaded. The web layer
(`web.session_cookie`) plugs this into Flask: it reads the cookies and sets them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json

from flask.sessions import SessionMixin
from peewee import JOIN
from werkzeug.datastructures import CallbackDict

from ..core import crypto
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.db import Prepared, write_transaction
from ..core.models import MfaThrottle, OidcToken, TotpCredential, User, WebSession
from . import lifetimes
from .state import ANONYMOUS, FLASHES_KEY, SHOWN_CODES_KEY

LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)
CSRF_KEY = "csrf_token"  # where Flask-WTF keeps the session's CSRF secret
MAX_TOKEN_LENGTH = 128
# What an anonymous session (no row) may keep, in the web layer's signed cookie:
# nothing secret but the CSRF secret, flashed messages (which never hold one), and the
# token that binds a passkey ceremony's challenge to this browser (factors.webauthn).
WEBAUTHN_BINDING_KEY = "webauthn_binding"
ANONYMOUS_KEYS = (CSRF_KEY, FLASHES_KEY, WEBAUTHN_BINDING_KEY)
MAX_ANONYMOUS_FLASHES = 5
_CREDENTIAL = "credential_at_load"
_THROTTLE = "throttle_at_load"


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
    "signin_methods",
)
_WRITE = Prepared(
    lambda slot: WebSession.update(
        {
            **{
                getattr(WebSession, name): slot(name, getattr(WebSession, name))
                for name in _SAVED_FIELDS
            },
            WebSession.user: slot("user"),
        }
    ).where((WebSession.id == slot("id")) & (WebSession.token_hash == slot("stored_hash")))
)


class ServerSession(CallbackDict, SessionMixin):
    """Flask's session dict, plus the row it was loaded from.

    Changes to the row are kept in memory and written by `write()`: at the end of the
    request, or earlier inside the transaction of the change that caused them. A
    request that fails writes nothing (`discard()`)."""

    def __init__(
        self,
        record: WebSession | None = None,
        data: dict | None = None,
        client: Client = NO_CLIENT,
    ):
        def on_update(session):
            session.modified = True

        super().__init__(data or {}, on_update)
        self.record = record
        self.client = client  # the browser of this request (what a new row records)
        self.stored_hash = record.token_hash if record else None  # what the row holds now
        self.new_token: str | None = None  # to send as the cookie
        self.record_changed = False
        self.discarded = False
        self.modified = False
        self.row_dropped = False  # this request deleted the row (back to anonymous)

    @property
    def state(self) -> str:
        return self.record.state if self.record else ANONYMOUS

    @property
    def has_row(self) -> bool:
        """Whether the session is kept in a row (else: anonymous, in a signed cookie)."""
        return self.record is not None and self.record.state != ANONYMOUS

    def anonymous_data(self) -> dict:
        """What an anonymous session keeps in its signed cookie (`ANONYMOUS_KEYS`);
        the last few messages only, so that the cookie stays small."""
        data = {key: self[key] for key in ANONYMOUS_KEYS if key in self}
        if FLASHES_KEY in data:
            data[FLASHES_KEY] = list(data[FLASHES_KEY])[-MAX_ANONYMOUS_FLASHES:]
        return data

    @property
    def user(self) -> User | None:
        return self.record.user if self.record and self.record.user_id else None

    def loaded(self) -> tuple[TotpCredential | None, MfaThrottle | None]:
        """The user's authenticator and code throttle row as they were when this
        request loaded the session (the same query): for the code step, which then
        needs no other read. (None, None) for a session without a user."""
        user = self.user
        if user is None:
            return None, None
        return getattr(user, _CREDENTIAL, None), getattr(user, _THROTTLE, None)

    def ensure_record(self, at: dt.datetime) -> WebSession:
        if self.record is None:
            self.record = WebSession(
                state=ANONYMOUS,
                created_at=at,
                state_since=at,
                last_seen_at=at,
                ip=self.client.ip,
                user_agent=self.client.user_agent,
            )
            self._new_id()
        return self.record

    def rotate(self) -> None:
        """Give the session a new id; the old cookie stops working when this is written.

        The CSRF token goes too: one seen before sign-in (say, in a session an attacker
        planted) must not be valid in the signed-in session."""
        self._new_id()
        self.pop(CSRF_KEY, None)

    def renew_token(self) -> None:
        """A new cookie for the same signed-in session (a re-authentication, a step-up):
        a copy of the old one stops working when this is written (SC-67). The CSRF
        secret stays: the forms of this person's other tabs keep working."""
        self._new_id()

    def _new_id(self) -> None:
        self.new_token = crypto.new_token()
        self.record.token_hash = crypto.hash_token(self.new_token)
        self.record_changed = True

    def changed(self) -> None:
        self.record_changed = True

    def write(self) -> bool:
        """Write the row now. Only a row that still has the id this request was given
        is updated: a session ended or rotated meanwhile (sign-out, admin reset) stays
        ended, this request's new cookie is not sent, and the answer is False.

        An anonymous session has no row: one it had (it was just signed out or expired)
        is deleted, and its data is left to the web layer's signed cookie."""
        record = self.record
        if not self.has_row:
            return self._drop_row()
        record.data = json.dumps(dict(self), separators=(",", ":"))
        if self.stored_hash is None:
            record.save(force_insert=True)
        else:
            values = {name: getattr(record, name) for name in _SAVED_FIELDS}
            updated = _WRITE.run(
                **values, user=record.user_id, id=record.id, stored_hash=self.stored_hash
            )
            if not updated:
                self.new_token = None
                self.discarded = True
                return False
        self.stored_hash = record.token_hash
        self.record_changed = self.modified = False
        return True

    def _drop_row(self) -> bool:
        if self.stored_hash is not None:
            deleted = (
                WebSession.delete()
                .where(
                    (WebSession.id == self.record.id) & (WebSession.token_hash == self.stored_hash)
                )
                .execute()
            )
            if not deleted:
                self.new_token = None
                self.discarded = True
                return False
            self.row_dropped = True
            self.modified = True  # what it kept (a message) goes to the signed cookie
        self.stored_hash = self.new_token = None
        self.record_changed = False
        return True

    def discard(self) -> None:
        """Forget what this request changed: nothing more is written."""
        self.discarded = True


# One query for the session, its user, and what the code step needs of the user (the
# credential and the throttle row): the hot path reads nothing else.
_LOAD = Prepared(
    lambda slot: (
        WebSession.select(WebSession, User, TotpCredential, MfaThrottle)
        .join(User, JOIN.LEFT_OUTER)
        .join(
            TotpCredential, JOIN.LEFT_OUTER, on=(TotpCredential.user == User.id), attr=_CREDENTIAL
        )
        .join_from(
            User, MfaThrottle, JOIN.LEFT_OUTER, on=(MfaThrottle.user == User.id), attr=_THROTTLE
        )
        .where(WebSession.token_hash == slot("token_hash"))
        .limit(1)
    )
)


def load(
    token: str | None,
    at: dt.datetime,
    client: Client = NO_CLIENT,
    anonymous: dict | None = None,
) -> ServerSession:
    """The session whose cookie holds `token`, if it is alive at `at`; else an
    anonymous one (no row) holding `anonymous` (what the browser's signed cookie
    kept, `ANONYMOUS_KEYS` only). A dead row is deleted. No token, no query."""

    def anonymous_session():
        kept = {k: v for k, v in (anonymous or {}).items() if k in ANONYMOUS_KEYS}
        return ServerSession(data=kept, client=client)

    if not token or len(token) > MAX_TOKEN_LENGTH:
        return anonymous_session()
    found = _LOAD.run(token_hash=crypto.hash_token(token))
    record = found[0] if found else None
    if record is None:
        return anonymous_session()
    if not lifetimes.session_alive(record, at):
        WebSession.delete().where(WebSession.id == record.id).execute()
        return anonymous_session()
    try:
        data = json.loads(record.data)
    except ValueError:
        data = {}
    return ServerSession(record, data, client)


def save(web_session: ServerSession, at: dt.datetime) -> str | None:
    """At the end of a request: write what changed (and, once a minute, when the
    session was last seen). Returns the token for a new cookie, if there is one.

    Never makes a row: an anonymous session's data is the web layer's to keep (and a
    row still anonymous, from before, is deleted so that it goes there too)."""
    if web_session.discarded or web_session.record is None:
        return None
    record = web_session.record
    if not web_session.has_row:
        web_session.write()
        return None
    touch = at - record.last_seen_at >= LAST_SEEN_RESOLUTION
    if touch:
        record.last_seen_at = at
    if web_session.modified or web_session.record_changed or touch:
        web_session.write()
    return web_session.new_token


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


def with_session(web_session: ServerSession) -> dict:
    """What a proof (`factors.proofs`) needs to commit together with this session's
    next state: the client to audit, and the session's transaction."""
    return {"client": web_session.client, "transaction": lambda: transition(web_session)}


def end_sessions_of(user: User) -> int:
    """Delete every browser session of a user (admin reset, password change, an
    administrator's sign-out), and revoke every OpenID Connect token the user's
    sign-ins gave to apps, refresh tokens included (SC-63): what those sessions proved
    no longer holds. Returns the number of sessions."""
    OidcToken.update(revoked_at=now()).where(
        (OidcToken.user == user) & OidcToken.revoked_at.is_null()
    ).execute()
    return WebSession.delete().where(WebSession.user == user).execute()


def end_other_sessions(web_session: ServerSession, user: User) -> int:
    """Delete every session of `user` but this one."""
    return (
        WebSession.delete()
        .where((WebSession.user == user) & (WebSession.id != web_session.record.id))
        .execute()
    )


def live_sessions_of(user: User, at: dt.datetime) -> list[WebSession]:
    """The user's sessions still within the idle and absolute limits (expired rows wait
    for `prune` but are dead: the server refuses them), last seen first."""
    return list(
        WebSession.select()
        .where((WebSession.user == user) & lifetimes.live_sessions(at))
        .order_by(WebSession.last_seen_at.desc())
    )


def show_codes(web_session: ServerSession, codes: list[str]) -> None:
    """Keep new recovery codes, encrypted, for the page that shows them once."""
    web_session[SHOWN_CODES_KEY] = crypto.encrypt("\n".join(codes))


def shown_codes(web_session: ServerSession) -> list[str]:
    stored = web_session.get(SHOWN_CODES_KEY)
    return crypto.decrypt(stored).split("\n") if stored else []


def forget_shown_codes(web_session: ServerSession) -> None:
    web_session.pop(SHOWN_CODES_KEY, None)
