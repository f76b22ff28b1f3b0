"""How long sessions live: each rule written once, as a query condition (for the
account page's list, the admin pages and `prune`) and as a test of one row (for the
request that loads it), both from the same cut-off times.

- A session lives `SESSION_IDLE_TIMEOUT` seconds after it was last seen and at most
  `SESSION_ABSOLUTE_TIMEOUT` seconds after it was made.
- A pending sign-in (set-up, code step, recovery codes on show) lives
  `MFA_SETUP_TIMEOUT` or `MFA_VERIFY_TIMEOUT` seconds from when it was entered;
  reloading never extends it.
- A secret being set up (`setup_secret`, at sign-in or from Account security) lives
  `MFA_SETUP_TIMEOUT` seconds from when it was made.
"""

from __future__ import annotations

import datetime as dt

from ..core.config import setting
from ..core.models import WebSession
from . import state

PENDING_TIMEOUT_CONFIG = {
    state.TOTP_SETUP: "MFA_SETUP_TIMEOUT",
    state.TOTP_VERIFY: "MFA_VERIFY_TIMEOUT",
    state.RECOVERY_CODES: "MFA_SETUP_TIMEOUT",
}


def _seconds(key: str) -> dt.timedelta:
    return dt.timedelta(seconds=setting(key))


def _session_cutoffs(at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(last seen no earlier than, created no earlier than) for a live session."""
    return at - _seconds("SESSION_IDLE_TIMEOUT"), at - _seconds("SESSION_ABSOLUTE_TIMEOUT")


def live_sessions(at: dt.datetime):
    """The condition a session row must meet to be alive at `at`."""
    seen_after, created_after = _session_cutoffs(at)
    return (WebSession.last_seen_at >= seen_after) & (WebSession.created_at >= created_after)


def session_alive(record: WebSession, at: dt.datetime) -> bool:
    seen_after, created_after = _session_cutoffs(at)
    return record.last_seen_at >= seen_after and record.created_at >= created_after


def pending_deadline(pending_state: str, since: dt.datetime) -> dt.datetime | None:
    """When a sign-in that entered `pending_state` at `since` expires (None: never,
    the state is not a pending one)."""
    key = PENDING_TIMEOUT_CONFIG.get(pending_state)
    return since + _seconds(key) if key else None


def pending_expired(record: WebSession | None, at: dt.datetime) -> bool:
    if record is None:
        return False
    deadline = pending_deadline(record.state, record.state_since)
    return deadline is not None and at > deadline


def setup_expired(since: dt.datetime, at: dt.datetime) -> bool:
    """Whether a secret made at `since` for a set-up is too old to be saved at `at`."""
    return at - since > _seconds("MFA_SETUP_TIMEOUT")


def expired_pending(at: dt.datetime):
    """The condition of a pending sign-in row past its deadline at `at`."""
    condition = None
    for pending_state, key in PENDING_TIMEOUT_CONFIG.items():
        one = (WebSession.state == pending_state) & (WebSession.state_since < at - _seconds(key))
        condition = one if condition is None else condition | one
    return condition
