"""The one clock of the application.

Every service asks `now()` for the time, so tests freeze or advance it instead of
sleeping. Times are naive datetimes in UTC, which both SQLite and PostgreSQL store
without conversion.
"""

from __future__ import annotations

import datetime as dt

from flask import current_app


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def timestamp(self) -> float:
        return self.now().replace(tzinfo=dt.UTC).timestamp()


class FrozenClock(SystemClock):
    """A clock that only moves when told to (for tests)."""

    def __init__(self, at: dt.datetime | float):
        if isinstance(at, int | float):
            at = dt.datetime.fromtimestamp(at, dt.UTC)
        self._now = at.replace(tzinfo=None)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)

    def set(self, at: dt.datetime | float) -> None:
        self.__init__(at)


def clock() -> SystemClock:
    # Asked several times per request: the proxy resolved once, not per attribute.
    return current_app._get_current_object().extensions["standalone_mfa.clock"]


def now() -> dt.datetime:
    return clock().now()
