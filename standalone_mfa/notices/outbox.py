"""The outbox: one row per notice, queued in its event's transaction and sent once.

Sending is claimed by a conditional update (a lease), so several processes and several
instances never send the same notice twice; a failed attempt is retried with
back-off and audited. The facts a mail tells (when, from which address and browser,
how many codes are left) are kept encrypted; never a code, secret, token or password,
except the confirmation link of a new address, which is its whole purpose."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass

from peewee import fn

from ..core import audit, crypto
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.config import setting
from ..core.db import write_transaction
from ..core.models import Notice, User

# Every kind of notice, with the template that tells it (templates/mail/<kind>.txt).
KINDS = (
    "totp_set_up",
    "totp_moved",
    "totp_reset",
    "recovery_code_used",
    "recovery_codes_new",
    "device_remembered",
    "password_changed",
    "second_factor_locked",
    "wrong_codes",
    "confirm_address",
    "address_changed",  # to the address notices stop going to
    "app_password_created",
    "webauthn_added",
    "webauthn_removed",
    "webauthn_clone",  # a sign counter went backwards: that sign-in was refused
)
LEASE = dt.timedelta(minutes=5)  # longer than any one send (MAIL_TIMEOUT) can take
BACKOFF_FIRST = 60  # seconds before the first retry, doubled each time...
BACKOFF_MOST = 3600  # ...up to an hour
BATCH = 50

_queued = threading.local()  # whether this thread queued a notice since it last asked


@dataclass(frozen=True)
class Pending:
    """A notice waiting to be sent, as `mail send --dry-run` shows it."""

    id: int
    kind: str
    to_address: str
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    attempts: int
    last_error: str | None


def enabled() -> bool:
    """Whether mail is configured at all: without MAIL_SERVER nothing is queued."""
    return bool(setting("MAIL_SERVER"))


def queue(
    user: User | None,
    kind: str,
    *,
    client: Client = NO_CLIENT,
    to: str | None = None,
    at: dt.datetime | None = None,
    **facts,
) -> Notice | None:
    """Queue a notice of `kind` for `user` (to their confirmed address, or `to`), in
    the caller's transaction. None when mail is off or there is no address."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    address = to or (user.email if user is not None else None)
    if not address or not enabled():
        return None
    at = at or now()
    told = {"at": at.isoformat(), "ip": client.ip, "user_agent": client.user_agent, **facts}
    with write_transaction():
        notice = Notice.create(
            user=user,
            to_address=address,
            kind=kind,
            facts=crypto.encrypt(json.dumps(told)),
            created_at=at,
            next_attempt_at=at,
        )
    _queued.flag = True
    return notice


def queued_since_asked() -> bool:
    """Whether this thread queued a notice since the last call (and forget it)."""
    flag = getattr(_queued, "flag", False)
    _queued.flag = False
    return flag


def facts_of(notice: Notice) -> dict:
    return json.loads(crypto.decrypt(notice.facts))


def recently_queued(user: User, kind: str, within: dt.timedelta) -> bool:
    """Whether a notice of `kind` was queued for `user` in the last `within` (for the
    notices told at most once an hour)."""
    since = now() - within
    return (
        Notice.select()
        .where((Notice.user == user) & (Notice.kind == kind) & (Notice.created_at > since))
        .exists()
    )


def _due_condition(at: dt.datetime, *, now: bool = False):
    """Unsent, not held by a sender, and due (`now`: due or waiting out a back-off)."""
    condition = Notice.sent_at.is_null() & (
        Notice.claimed_until.is_null() | (Notice.claimed_until < at)
    )
    return condition if now else condition & (Notice.next_attempt_at <= at)


def due_ids(
    at: dt.datetime, limit: int = BATCH, *, now: bool = False, after: int = 0
) -> list[int]:
    """The next notices to try (`now`: every pending one, back-off or not), in order,
    from the id after `after`."""
    query = (
        Notice.select(Notice.id)
        .where(_due_condition(at, now=now) & (Notice.id > after))
        .order_by(Notice.id)
        .limit(limit)
    )
    return [row.id for row in query]


def claim(notice_id: int, at: dt.datetime, *, now: bool = False) -> Notice | None:
    """Take the notice for one attempt, if no other sender has it: a conditional
    update, so of several processes exactly one gets it. `now`: even while it waits
    out a back-off (an operator's `mail send`)."""
    with write_transaction():
        taken = (
            Notice.update(claimed_until=at + LEASE, attempts=Notice.attempts + 1)
            .where((Notice.id == notice_id) & _due_condition(at, now=now))
            .execute()
        )
        return Notice.get_by_id(notice_id) if taken else None


def mark_sent(notice: Notice, at: dt.datetime) -> None:
    with write_transaction():
        Notice.update(sent_at=at, claimed_until=None, last_error=None).where(
            Notice.id == notice.id
        ).execute()
        audit.record("notice", "sent", user=notice.user, detail=notice.kind)


def mark_failed(notice: Notice, at: dt.datetime, error: str) -> dt.datetime:
    """Give the notice back for a later attempt (back-off by its attempts); audited.
    The time of the next attempt."""
    delay = min(BACKOFF_FIRST * 2 ** max(notice.attempts - 1, 0), BACKOFF_MOST)
    retry_at = at + dt.timedelta(seconds=delay)
    with write_transaction():
        Notice.update(claimed_until=None, next_attempt_at=retry_at, last_error=error[:500]).where(
            Notice.id == notice.id
        ).execute()
        audit.record(
            "notice",
            "failed",
            user=notice.user,
            detail=f"{notice.kind}, attempt {notice.attempts}: {error[:200]}",
        )
    return retry_at


def pending(limit: int = 1000) -> list[Pending]:
    query = (
        Notice.select()
        .where(Notice.sent_at.is_null())
        .order_by(Notice.next_attempt_at, Notice.id)
        .limit(limit)
    )
    return [
        Pending(
            n.id, n.kind, n.to_address, n.created_at, n.next_attempt_at, n.attempts, n.last_error
        )
        for n in query
    ]


def count_pending() -> int:
    return Notice.select(fn.COUNT(Notice.id)).where(Notice.sent_at.is_null()).scalar() or 0


def prune_sent(older_than: dt.datetime) -> int:
    """Delete notices sent before `older_than` (their facts with them)."""
    with write_transaction():
        return (
            Notice.delete()
            .where(Notice.sent_at.is_null(False) & (Notice.sent_at < older_than))
            .execute()
        )
