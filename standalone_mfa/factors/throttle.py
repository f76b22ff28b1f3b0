"""Per-account limits on guessing, kept in the database so that every login, session,
process and server of the account shares them. Two counters, one mechanism:

- second-factor codes (`MfaThrottle`, per user): from `BACKOFF_AFTER` consecutive
  failures each attempt waits 2^(n-BACKOFF_AFTER) seconds after the last failure (at
  most `MAX_DELAY`); at `LOCK_AFTER` only an administrator can unlock;
- passwords (`PasswordThrottle`, per username as typed, known or not, so the answer
  never tells which accounts exist): the same back-off from
  `PASSWORD_BACKOFF_AFTER` failures, and no hard lock, which anyone could trigger.

Each attempt is counted *before* it is checked, by a compare-and-set on the counter,
so a parallel burst cannot slip extra guesses past the limit; a success sets the
counter back to zero.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from ..core import audit
from ..core.clock import now
from ..core.db import write_transaction
from ..core.models import MfaThrottle, PasswordThrottle

BACKOFF_AFTER = 5
LOCK_AFTER = 50
PASSWORD_BACKOFF_AFTER = 10
MAX_DELAY = 15 * 60
_CAS_TRIES = 20


@dataclass(frozen=True)
class Attempt:
    allowed: bool
    retry_after: int = 0
    locked: bool = False


def delay_after(failures: int, backoff_after: int = BACKOFF_AFTER) -> int:
    """Seconds an attempt must wait after the last failure, given n failures."""
    if failures < backoff_after:
        return 0
    return min(2 ** (failures - backoff_after), MAX_DELAY)


def _claim(model, where, key: dict, backoff_after: int, lock_after: int | None) -> Attempt:
    """Count one attempt as a failure up front, unless the counter says wait."""
    for _ in range(_CAS_TRIES):
        row = model.get_or_none(where)
        if row is None:  # first attempt, or an admin just cleared the row
            model.insert(**key, failures=0).on_conflict_ignore().execute()
            continue
        if lock_after is not None and row.failures >= lock_after:
            return Attempt(False, locked=True)
        at = now()
        delay = delay_after(row.failures, backoff_after)
        if delay and row.last_failure_at is not None:
            waited = (at - row.last_failure_at).total_seconds()
            if waited < delay:
                # Never more than the delay itself, even if the clock stepped back.
                return Attempt(False, retry_after=min(delay, math.ceil(delay - waited)))
        claimed = (
            model.update(failures=row.failures + 1, last_failure_at=at)
            .where(where & (model.failures == row.failures))
            .execute()
        )
        if claimed:
            return Attempt(True)
    # Lost every race: others are hammering this account right now.
    return Attempt(False, retry_after=1)


# Second-factor codes, per user.


def begin_attempt(user) -> Attempt:
    return _claim(MfaThrottle, MfaThrottle.user == user, {"user": user}, BACKOFF_AFTER, LOCK_AFTER)


def record_success(user) -> None:
    MfaThrottle.update(failures=0, last_failure_at=None).where(MfaThrottle.user == user).execute()


def failures(user) -> int:
    row = MfaThrottle.get_or_none(MfaThrottle.user == user)
    return row.failures if row else 0


def clear(user) -> None:
    """An administrator's reset or unlock."""
    MfaThrottle.delete().where(MfaThrottle.user == user).execute()


def unlock(user, *, actor: str) -> int:
    """An administrator lets a throttled or locked account try codes (and passwords)
    again at once.

    Returns how many consecutive failures were forgiven (0: there was nothing to
    unlock, audited as "unchanged")."""
    with write_transaction():
        # Wrong passwords too: the account is as stuck behind their back-off.
        forgiven = failures(user) + password_failures(user.username)
        clear(user)
        password_success(user.username)
        outcome = "ok" if forgiven else "unchanged"
        audit.record("unlock", outcome, user=user, actor=actor, detail=f"{forgiven} failures")
    return forgiven


def describe(count: int) -> str:
    """What an administrator needs to know of a failure count: "locked" (only an
    administrator can help), "throttled" (each try waits), "failures" or "ok"."""
    if count >= LOCK_AFTER:
        return "locked"
    if count >= BACKOFF_AFTER:
        return "throttled"
    return "failures" if count else "ok"


# Passwords, per username as typed (normalised), whether or not the account exists.


def _password_key(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8")).hexdigest()


def begin_password_attempt(username: str) -> Attempt:
    key = _password_key(username)
    where = PasswordThrottle.key == key
    return _claim(PasswordThrottle, where, {"key": key}, PASSWORD_BACKOFF_AFTER, None)


def password_failures(username: str) -> int:
    row = PasswordThrottle.get_or_none(PasswordThrottle.key == _password_key(username))
    return row.failures if row else 0


def password_failures_of(usernames: list[str]) -> dict[str, int]:
    """Wrong-password counts of several usernames, in one query."""
    keys = {_password_key(name): name for name in usernames}
    rows = PasswordThrottle.select().where(PasswordThrottle.key.in_(list(keys)))
    return {keys[row.key]: row.failures for row in rows}


def password_success(username: str) -> None:
    PasswordThrottle.delete().where(PasswordThrottle.key == _password_key(username)).execute()
