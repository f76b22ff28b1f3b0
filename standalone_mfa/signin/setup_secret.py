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
import json

from ..core import crypto
from ..core.models import WebSession
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


def clear_expired(at: dt.datetime) -> int:
    """Drop the secrets of set-ups that expired and were left (for `prune`): a signed-in
    session whose person never came back to the page would keep one for its whole life.
    A session whose data changed meanwhile (a new set-up begun) is left for the next
    run. How many were dropped."""
    rows = WebSession.select(
        WebSession.id, WebSession.data, WebSession.state, WebSession.state_since
    ).where(WebSession.pending_secret_encrypted.is_null(False))
    dropped = 0
    for row in rows:
        try:
            data = json.loads(row.data or "{}")
        except ValueError:
            data = {}
        since = _parsed(data.get(SINCE_KEY)) if isinstance(data, dict) else None
        if since is None and row.state == state.TOTP_SETUP:
            since = row.state_since
        if since is not None and not lifetimes.setup_expired(since, at):
            continue
        dropped += (
            WebSession.update(pending_secret_encrypted=None)
            .where((WebSession.id == row.id) & (WebSession.data == row.data))
            .execute()
        )
    return dropped


def _since(web_session: ServerSession) -> dt.datetime | None:
    since = _parsed(web_session.get(SINCE_KEY))
    if since is not None:
        return since
    # A sign-in's set-up begun before this release kept no time: it began with its state.
    record = web_session.record
    return record.state_since if record.state == state.TOTP_SETUP else None


def _parsed(value) -> dt.datetime | None:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
