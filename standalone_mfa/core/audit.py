"""The audit trail: one row per security event, and the same event as one JSON log
line; and reading it back (the filtered list at /admin/audit) and pruning it. Callers
pass fixed words only (event, outcome, detail); never a secret, code, password, token
or cookie."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass

from peewee import fn

from .clock import now
from .db import Prepared, write_transaction
from .models import AuditEvent
from .pagination import PER_PAGE, Page, paginate

logger = logging.getLogger("standalone_mfa.audit")
MAX_RETENTION_DAYS = 100 * 365

# What a change someone asked for came to: the outcome of its audit row, and what the
# services that make changes (groups, addresses, settings, users) return.
CHANGED = "ok"
UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Client:
    """Who is at the other end: the address and browser an event came from (what the
    audit trail, the sessions and the remembered devices keep). The web layer makes
    it from the request; the CLI has none."""

    ip: str | None = None
    user_agent: str | None = None


NO_CLIENT = Client()


_COLUMNS = ("at", "event", "outcome", "username", "actor", "ip", "detail")
# Every request of the sign-in writes one: built once (see `db.Prepared`).
_INSERT = Prepared(
    lambda slot: AuditEvent.insert(
        {getattr(AuditEvent, name): slot(name, getattr(AuditEvent, name)) for name in _COLUMNS}
    )
)


def record(
    event: str,
    outcome: str,
    *,
    user=None,
    username=None,
    actor=None,
    detail=None,
    client: Client = NO_CLIENT,
):
    name = username or (user.username if user is not None else None)
    ip = client.ip
    at = now()
    _INSERT.run(
        at=at, event=event, outcome=outcome, username=name, actor=actor, ip=ip, detail=detail
    )
    logger.info(
        json.dumps(
            {
                "at": at.isoformat() + "Z",
                "event": event,
                "outcome": outcome,
                "user": name,
                "actor": actor,
                "ip": ip,
                "detail": detail,
            }
        )
    )


class AuditCap:
    """At most one audit row per key every `interval` seconds, in this process: for
    events a stranger can repeat at will (a refused gateway check, a throttled
    re-authentication), so that they are seen without a row per attempt. Bounded: past
    `size` keys it forgets them all (a burst of new keys may then write once more
    each). The metrics, not the audit log, count every attempt."""

    def __init__(self, interval: float = 60.0, size: int = 4096):
        self._interval = interval
        self._size = size
        self._last: dict = {}
        self._lock = threading.Lock()

    def due(self, key, moment: float | None = None) -> bool:
        """Whether a row for `key` may be written now (and, if so, count it written)."""
        moment = time.monotonic() if moment is None else moment
        with self._lock:
            last = self._last.get(key)
            if last is not None and 0 <= moment - last < self._interval:
                return False
            if len(self._last) >= self._size:
                self._last.clear()
            self._last[key] = moment
            return True


def cap(name: str) -> AuditCap:
    """The app's own `AuditCap` called `name` (one per app: tests build many)."""
    from flask import current_app

    return current_app.extensions.setdefault(f"standalone_mfa.audit_cap.{name}", AuditCap())


def event_types() -> list[str]:
    """Every kind of event the log holds, for the filter's choices."""
    query = AuditEvent.select(fn.DISTINCT(AuditEvent.event)).order_by(AuditEvent.event)
    return [event for (event,) in query.tuples()]


def search(
    *,
    username: str | None = None,
    event: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> Page:
    """Events, newest first. `username` matches the account an event is about or the
    one who did it; `start` and `end` are UTC days, both included."""
    query = AuditEvent.select().order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if username:
        query = query.where((AuditEvent.username == username) | (AuditEvent.actor == username))
    if event:
        query = query.where(AuditEvent.event == event)
    if start:
        query = query.where(AuditEvent.at >= dt.datetime.combine(start, dt.time()))
    if end:
        next_day = dt.datetime.combine(end, dt.time()) + dt.timedelta(days=1)
        query = query.where(AuditEvent.at < next_day)
    return paginate(query, page, per_page, clamp=True)


def prune(older_than_days: int, *, actor: str) -> int:
    """Delete events older than N days; the pruning itself is recorded (and kept)."""
    if not 1 <= older_than_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"older_than_days must be between 1 and {MAX_RETENTION_DAYS}")
    cutoff = now() - dt.timedelta(days=older_than_days)
    with write_transaction():
        deleted = AuditEvent.delete().where(AuditEvent.at < cutoff).execute()
        record(
            "audit_pruned",
            "ok",
            actor=actor,
            detail=f"{deleted} events before {cutoff.isoformat()}Z",
        )
    return deleted
