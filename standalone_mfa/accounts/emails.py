"""Email addresses: where a user's notices go, and the time zone their mails tell.

An address an administrator sets (CLI, Users page) counts as confirmed at once: they
know their users. One a user sets themselves on Account security (after their
password) waits in `pending_email` until the link mailed to it is opened: a random
token, stored only as its hash, single use, expiring after `LINK_LIFETIME`. Until
then notices keep going to the old confirmed address, and the new one gets nothing
but its link. Every change is audited with its actor; the old address is told when
notices stop going to it.

Two users may share an address (a team's mailbox, one person with an everyday and an
administrator account): an address here only receives notices, it never signs in or
resets anything, so uniqueness would protect nothing, and refusing a taken address
would tell a user which addresses other accounts have."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import available_timezones

from ..core import audit, crypto, messages
from ..core.addresses import BadAddress, normalise
from ..core.audit import CHANGED, NO_CLIENT, UNCHANGED, Client
from ..core.clock import now
from ..core.db import write_transaction
from ..core.models import EmailConfirmation, Notice, User
from ..notices import outbox

__all__ = ["BadAddress", "EmailError"]

LINK_LIFETIME = dt.timedelta(hours=24)
# A signed-in user (or whoever holds their session and password) can have links mailed
# to any address: at most this many an hour, so that nobody's mailbox is flooded.
LINKS_PER_HOUR = 5
MAX_TOKEN_LENGTH = 100  # new_token() gives 43 characters; anything far longer is not one
MAX_TIME_ZONE_LENGTH = 64  # the column's

# What `confirm` came to.
CONFIRMED = "confirmed"
EXPIRED = "expired"
NOT_VALID = "not_valid"  # unknown, already used, another user's, or replaced by a newer change


class EmailError(ValueError):
    """A change that cannot be made (the message says why); nothing was changed."""


@dataclass(frozen=True)
class Link:
    """A confirmation link as its page needs it: whose, for which address, until when."""

    user_id: int
    address: str
    expires_at: dt.datetime


def _forget_links(user: User) -> int:
    """Void the user's unused links: a newer change (theirs or an administrator's)
    replaces whatever they were sent before."""
    return (
        EmailConfirmation.delete()
        .where((EmailConfirmation.user == user.id) & EmailConfirmation.used_at.is_null())
        .execute()
    )


def _tell_old_address(user: User, old: str | None, new: str | None, client: Client, **facts):
    """The address notices stop going to is told so (where they go now, and by whom)."""
    if old and old != new:
        outbox.queue(user, "address_changed", client=client, to=old, new_address=new, **facts)


# --- Administrators ------------------------------------------------------------------------


def set_by_admin(user: User, raw: str | None, *, actor: str, client: Client = NO_CLIENT) -> str:
    """Give `user` the address `raw`, confirmed at once; a pending change of theirs and
    its links are dropped. The address as stored; BadAddress before anything is written."""
    address = normalise(raw)
    with write_transaction():
        current = User.get_by_id(user.id)
        _forget_links(user)
        User.update(email=address, pending_email=None).where(User.id == user.id).execute()
        same = current.email == address and current.pending_email is None
        outcome = UNCHANGED if same else CHANGED
        audit.record("email_set", outcome, user=user, actor=actor, detail=address, client=client)
        _tell_old_address(user, current.email, address, client, by_admin=True)
    user.email, user.pending_email = address, None
    return outcome


def remove_by_admin(user: User, *, actor: str, client: Client = NO_CLIENT) -> str:
    """Take away the user's address (and any pending one): no more notices."""
    with write_transaction():
        current = User.get_by_id(user.id)
        _forget_links(user)
        User.update(email=None, pending_email=None).where(User.id == user.id).execute()
        had = current.email or current.pending_email
        outcome = CHANGED if had else UNCHANGED
        audit.record("email_removed", outcome, user=user, actor=actor, client=client)
        _tell_old_address(user, current.email, None, client, by_admin=True)
    user.email = user.pending_email = None
    return outcome


# --- The user ------------------------------------------------------------------------------


def request_change(
    user: User,
    raw: str | None,
    *,
    link_for: Callable[[str], str],
    client: Client = NO_CLIENT,
) -> str:
    """The user asks for a new address (their password was checked by the caller): it
    becomes `pending_email`, and a link to confirm it is mailed to it, built by
    `link_for(token)`. Earlier links stop working. The address as stored; BadAddress
    or EmailError before anything is written."""
    address = normalise(raw)
    if address == user.email:
        raise EmailError(messages.text("email_already_yours"))
    if not outbox.enabled():
        # Without mail the link could never arrive: say so rather than strand the address.
        raise EmailError(messages.text("email_no_mail"))
    at = now()
    if _links_sent_since(user, at - dt.timedelta(hours=1)) >= LINKS_PER_HOUR:
        raise EmailError(messages.text("email_too_many", most=LINKS_PER_HOUR))
    token = crypto.new_token()
    hours = round(LINK_LIFETIME.total_seconds() / 3600)
    with write_transaction():
        _forget_links(user)
        EmailConfirmation.create(
            user=user.id,
            address=address,
            token_hash=crypto.hash_token(token),
            created_at=at,
            expires_at=at + LINK_LIFETIME,
        )
        User.update(pending_email=address).where(User.id == user.id).execute()
        audit.record(
            "email_change",
            "requested",
            user=user,
            actor=user.username,
            detail=address,
            client=client,
        )
        # To the new address only (the link is its whole purpose); encrypted at rest.
        outbox.queue(
            user, "confirm_address", client=client, to=address, link=link_for(token), hours=hours
        )
    user.pending_email = address
    return address


def _links_sent_since(user: User, since: dt.datetime) -> int:
    return (
        Notice.select()
        .where(
            (Notice.user == user.id)
            & (Notice.kind == "confirm_address")
            & (Notice.created_at > since)
        )
        .count()
    )


def cancel_change(user: User, *, client: Client = NO_CLIENT) -> bool:
    """Drop the user's pending address and its links; whether there was one."""
    with write_transaction():
        _forget_links(user)
        dropped = (
            User.update(pending_email=None)
            .where((User.id == user.id) & User.pending_email.is_null(False))
            .execute()
        )
        if dropped:
            audit.record(
                "email_change", "cancelled", user=user, actor=user.username, client=client
            )
    user.pending_email = None
    return bool(dropped)


def _link_row(token: str | None) -> EmailConfirmation | None:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return EmailConfirmation.get_or_none(EmailConfirmation.token_hash == crypto.hash_token(token))


def check_link(user: User, token: str | None) -> tuple[str, Link | None]:
    """What opening the link would do, without using it up (mail scanners fetch links):
    (CONFIRMED, the link) when it would confirm; else (EXPIRED or NOT_VALID, None)."""
    row = _link_row(token)
    if row is None or row.user_id != user.id or row.used_at is not None:
        return NOT_VALID, None
    if row.expires_at <= now():
        return EXPIRED, None
    return CONFIRMED, Link(row.user_id, row.address, row.expires_at)


def confirm(user: User, token: str | None, *, client: Client = NO_CLIENT) -> str:
    """Confirm the address a link was sent to: it becomes the user's address, for
    notices from now on. Only the signed-in owner of the link can; a link works once
    (a conditional update: of two clicks at once exactly one counts), never after it
    expired or after a newer change replaced it. CONFIRMED, EXPIRED or NOT_VALID."""
    outcome, link = check_link(user, token)
    if link is None:
        if _link_row(token) is not None:
            audit.record(
                "email_change",
                EXPIRED if outcome == EXPIRED else NOT_VALID,
                user=user,
                actor=user.username,
                client=client,
            )
        return outcome
    at = now()
    with write_transaction():
        taken = (
            EmailConfirmation.update(used_at=at)
            .where(
                (EmailConfirmation.token_hash == crypto.hash_token(token))
                & (EmailConfirmation.user == user.id)
                & EmailConfirmation.used_at.is_null()
                & (EmailConfirmation.expires_at > at)
            )
            .execute()
        )
        current = User.get_by_id(user.id)
        if not taken or current.pending_email != link.address:
            return NOT_VALID  # used meanwhile, or an administrator's change came after
        User.update(email=link.address, pending_email=None).where(User.id == user.id).execute()
        audit.record(
            "email_change",
            CONFIRMED,
            user=user,
            actor=user.username,
            detail=link.address,
            client=client,
        )
        _tell_old_address(user, current.email, link.address, client, by_admin=False)
    user.email, user.pending_email = link.address, None
    return CONFIRMED


# --- Time zone -----------------------------------------------------------------------------


@functools.cache
def time_zones() -> tuple[str, ...]:
    """Every IANA time zone name this system knows (what the field offers), sorted."""
    return tuple(sorted(available_timezones()))


def time_zone_name(raw: str | None) -> str | None:
    """The IANA time zone `raw` names (None: empty, mails say UTC), or EmailError."""
    name = (raw or "").strip()
    if not name:
        return None
    if len(name) > MAX_TIME_ZONE_LENGTH or name not in time_zones():
        raise EmailError(messages.text("bad_time_zone"))
    return name


def _other_zone(name: str | None):
    """The user's saved zone is not `name` (NULL-safe: SQL's `<>` never matches NULL)."""
    if name is None:
        return User.time_zone.is_null(False)
    return User.time_zone.is_null() | (User.time_zone != name)


def set_time_zone(user: User, raw: str | None, *, client: Client = NO_CLIENT) -> str | None:
    """Save the zone the user's mails tell times in (audited when it changes);
    EmailError before any write."""
    name = time_zone_name(raw)
    with write_transaction():
        changed = (
            User.update(time_zone=name).where((User.id == user.id) & _other_zone(name)).execute()
        )
        if not changed:
            return name
        audit.record(
            "time_zone_set",
            "ok",
            user=user,
            actor=user.username,
            detail=name or "UTC",
            client=client,
        )
    user.time_zone = name
    return name
