"""Per-account limits on second-factor attempts, kept in the database so that every
login, session, process and server of the account shares them.

Each attempt is counted *before* its code is checked, by a compare-and-set on the
failure counter, so a parallel burst cannot slip extra guesses past the limit; a
correct code sets the counter back to zero. From `BACKOFF_AFTER` consecutive
failures on, each attempt waits 2^(n-BACKOFF_AFTER) seconds after the last one
(at most `MAX_DELAY`); at `LOCK_AFTER` only an administrator can unlock.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from .clock import now
from .models import MfaThrottle

BACKOFF_AFTER = 5
LOCK_AFTER = 50
MAX_DELAY = 15 * 60
_CAS_TRIES = 20


@dataclass(frozen=True)
class Attempt:
    allowed: bool
    retry_after: int = 0
    locked: bool = False


def delay_after(failures: int) -> int:
    """Seconds an attempt must wait after the last failure, given n failures."""
    if failures < BACKOFF_AFTER:
        return 0
    return min(2 ** (failures - BACKOFF_AFTER), MAX_DELAY)


def begin_attempt(user) -> Attempt:
    """Count one attempt as a failure up front, unless the account must wait."""
    MfaThrottle.insert(user=user, failures=0).on_conflict_ignore().execute()
    for _ in range(_CAS_TRIES):
        row = MfaThrottle.get(MfaThrottle.user == user)
        if row.failures >= LOCK_AFTER:
            return Attempt(False, locked=True)
        at = now()
        if row.last_failure_at is not None:
            ready_at = row.last_failure_at + dt.timedelta(seconds=delay_after(row.failures))
            if at < ready_at:
                return Attempt(False, retry_after=math.ceil((ready_at - at).total_seconds()))
        claimed = (
            MfaThrottle.update(failures=row.failures + 1, last_failure_at=at)
            .where((MfaThrottle.user == user) & (MfaThrottle.failures == row.failures))
            .execute()
        )
        if claimed:
            return Attempt(True)
    # Lost every race: others are hammering this account right now.
    return Attempt(False, retry_after=1)


def record_success(user) -> None:
    MfaThrottle.update(failures=0, last_failure_at=None).where(MfaThrottle.user == user).execute()


def failures(user) -> int:
    row = MfaThrottle.get_or_none(MfaThrottle.user == user)
    return row.failures if row else 0


def is_locked(user) -> bool:
    return failures(user) >= LOCK_AFTER


def clear(user) -> None:
    """An administrator's reset or unlock."""
    MfaThrottle.delete().where(MfaThrottle.user == user).execute()
