"""The audit trail: one row per security event, and the same event as one JSON log
line; and reading it back (the filtered list at /admin/audit) and pruning it. Callers
pass fixed words only (event, outcome, detail); never a secret, code, password, token
or cookie."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass

from peewee import fn

from .clock import now
from .db import Prepared, write_transaction
from .models import AuditEvent
from .pagination import PER_PAGE, Page, paginate

logger = logging.getLogger("standalone_mfa.audit")
MAX_RETENTION_DAYS = 100 * 365


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


class RateCap:
    """For events that a client can repeat at will: whether one for `key` is due at
    `at`, at most once per `interval` seconds per key and process, so that they never
    grow the log without bound. Forgets every key past `size` distinct ones."""

    def __init__(self, interval: float, size: int = 4096):
        self._interval = interval
        self._size = size
        self._last: dict = {}
        self._lock = threading.Lock()

    def due(self, key, at: dt.datetime) -> bool:
        moment = at.timestamp()
        with self._lock:
            last = self._last.get(key)
            # A clock that went back does not silence a key for longer.
            if last is not None and 0 <= moment - last < self._interval:
                return False
            if len(self._last) >= self._size:
                self._last.clear()
            self._last[key] = moment
            return True


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
