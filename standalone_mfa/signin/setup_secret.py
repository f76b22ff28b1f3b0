"""The secret of an authenticator being set up, in one home for every flow: the
sign-in's set-up step (`steps`), and a first or a new authenticator from Account
security (`accounts.authenticator`).

It is kept encrypted in the session's row (`WebSession.pending_secret_encrypted`, which
`rotate-keys` re-encrypts with every other secret), never in the session's data. It
lives `MFA_SETUP_TIMEOUT` seconds from when it was made (`lifetimes.setup_expired`),
however often the page is reloaded; the time it was made is kept in the session's data
(`SINCE_KEY`: not a secret). A session that goes back to anonymous loses it (`state`).
"""

from __future__ import annotations

import datetime as dt

from ..core import crypto
from ..factors import totp
from . import lifetimes, state
from .sessions import ServerSession

SINCE_KEY = state.SETUP_SINCE_KEY
# Where the releases before this one kept Account security's secret (in the data).
_OLD_KEYS = ("new_authenticator", "new_authenticator_since")


def start(web_session: ServerSession, at: dt.datetime) -> None:
    """A new secret for this session (replacing one being set up, if any)."""
    record = web_session.ensure_record(at)
    record.pending_secret_encrypted = crypto.encrypt(totp.new_secret())
    web_session[SINCE_KEY] = at.isoformat()
    for key in _OLD_KEYS:
        web_session.pop(key, None)
    web_session.changed()


def secret(web_session: ServerSession, at: dt.datetime) -> str | None:
    """The secret being set up, or None if there is none or it has expired (then it is
    dropped)."""
    record = web_session.record
    if record is None or not record.pending_secret_encrypted:
        return None
    since = _since(web_session)
    if since is None or lifetimes.setup_expired(since, at):
        cancel(web_session)
        return None
    return crypto.decrypt(record.pending_secret_encrypted)


def cancel(web_session: ServerSession) -> None:
    """Drop the secret being set up (saved, abandoned or expired)."""
    if web_session.record is not None and web_session.record.pending_secret_encrypted:
        web_session.record.pending_secret_encrypted = None
        web_session.changed()
    web_session.pop(SINCE_KEY, None)


def _since(web_session: ServerSession) -> dt.datetime | None:
    value = web_session.get(SINCE_KEY)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    # A sign-in's set-up begun before this release kept no time: it began with its state.
    record = web_session.record
    return record.state_since if record.state == state.TOTP_SETUP else None
