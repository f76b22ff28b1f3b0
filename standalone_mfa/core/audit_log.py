"""Reading and pruning the audit trail (`audit` writes it): the filtered, paginated
list administrators see at /admin/audit, newest first, and the retention command."""

from __future__ import annotations

import datetime as dt

from peewee import fn

from . import audit
from .clock import now
from .db import write_transaction
from .models import AuditEvent
from .pagination import PER_PAGE, Page, paginate

MAX_RETENTION_DAYS = 100 * 365


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
        audit.record(
            "audit_pruned",
            "ok",
            actor=actor,
            detail=f"{deleted} events before {cutoff.isoformat()}Z",
        )
    return deleted
