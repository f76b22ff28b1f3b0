"""App passwords: named secrets for clients that cannot follow the sign-in page (a
phone's calendar, a sync client, git, a script). A signed-in person makes one after
proving it is them again; it is shown once; the gateway accepts it as Basic
credentials on the rules that allow it (`gateway.check`), nowhere else.

Each is 160 random bits. Only its SHA-256 is stored: a slow hash (scrypt) protects
guessable passwords, and this one cannot be guessed, while the gateway checks it on
every request such a client makes, so one indexed query on the hash finds it (no
separate lookup id is needed: the hash is the index). A wrong one costs the client's
address a failure on the per-address throttle (`throttle.begin_address_attempt`),
never the account's counters, so a stranger's guesses never slow the person's own
browser (SC-41). Failures are audited at most once a minute per address and process."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hmac
import math
import re
import secrets
from dataclasses import dataclass

from ..core import audit, crypto, messages, names
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.db import UNAVAILABLE, Prepared, is_sqlite, write_transaction
from ..core.identity import holder_query
from ..core.models import AddressThrottle, AppPassword, User
from ..notices import outbox
from . import throttle

MAX_PER_USER = 20
NAME_MAX_LENGTH = 64
SECRET_BYTES = 20  # 160 bits, written as 32 base32 letters in 8 groups of 4
SECRET_LENGTH = 32
GROUP = 4
# Last use (time and address) is written at most this often per app password, or when
# the address changes: a calendar asks every few minutes, each request need not write.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)

_SECRET = re.compile(r"[a-z2-7]{32}")
_SEPARATORS = re.compile(r"[\s-]+")


class AppPasswordError(ValueError):
    """A create or revoke that cannot be done; the message is in the page's language."""


@dataclass(frozen=True)
class Holder:
    """Whose app password a request carried, as the gateway needs them."""

    app_password_id: int
    username: str
    groups: tuple[str, ...]
    email: str | None
    two_factor: bool  # made after proving a second factor
    mfa_method: str | None  # the site's, read in the same query


@dataclass(frozen=True)
class Outcome:
    """`holder` when the app password is right; else why not (`throttled`: not even
    checked, the address must wait `retry_after` seconds)."""

    holder: Holder | None
    throttled: bool = False
    retry_after: int = 0


# --- Making, listing and revoking ---------------------------------------------------------


def new_secret() -> str:
    """A fresh app password, as shown: `abcd-efgh-…` (lower-case base32, easy to type
    on a phone; the dashes are optional when it is typed back)."""
    text = base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").lower()
    return "-".join(text[i : i + GROUP] for i in range(0, SECRET_LENGTH, GROUP))


def normalise_secret(raw: str | None) -> str | None:
    """The secret without dashes and spaces, in lower case; None if it cannot be one."""
    if not raw or len(raw) > 4 * SECRET_LENGTH:
        return None
    text = _SEPARATORS.sub("", raw).lower()
    return text if _SECRET.fullmatch(text) else None


def _hash(secret: str) -> str:
    return crypto.hash_token("app-password:" + secret)


def check_name(raw: str | None) -> str:
    """A name as people tell their clients apart ("Phone calendar"): 1-64 printable
    characters, spaces collapsed."""
    name = names.display_name(raw, NAME_MAX_LENGTH)
    if name is None:
        raise AppPasswordError(messages.text("app_password_bad_name", most=NAME_MAX_LENGTH))
    return name


def active_of(user: User) -> list[AppPassword]:
    """The user's app passwords that work, oldest first."""
    query = AppPassword.select().where(
        (AppPassword.user == user) & AppPassword.revoked_at.is_null()
    )
    return list(query.order_by(AppPassword.created_at, AppPassword.id))


def all_of(user: User) -> list[AppPassword]:
    """Every app password of the user, revoked ones included (newest first among
    those): what the page and `user app-password list` show."""
    query = AppPassword.select().where(AppPassword.user == user)
    rows = list(query.order_by(AppPassword.created_at, AppPassword.id))
    return [r for r in rows if r.revoked_at is None] + sorted(
        (r for r in rows if r.revoked_at is not None), key=lambda r: r.revoked_at, reverse=True
    )


def check_new(user: User, name: str | None) -> tuple[str, list[AppPassword]]:
    """The name, checked, if the user may make an app password so named (and their
    rows); raises AppPasswordError, saying why not. The page asks before the person
    proves it is them, so that a bad name does not spend their code."""
    name = check_name(name)
    rows = list(AppPassword.select().where(AppPassword.user == user))
    live = [r for r in rows if r.revoked_at is None]
    if any(r.name.casefold() == name.casefold() for r in live):
        raise AppPasswordError(messages.text("app_password_name_taken", name=name))
    if len(live) >= MAX_PER_USER:
        raise AppPasswordError(messages.text("app_password_limit", most=MAX_PER_USER))
    return name, rows


def create(
    user: User, name: str, *, two_factor: bool, actor: str, client: Client = NO_CLIENT
) -> str:
    """Make an app password named `name` for `user`; the secret, to show once. The
    caller has made the person prove who they are (`two_factor`: with a second
    factor). The person is told by mail. Raises AppPasswordError, changing nothing."""
    secret = new_secret()
    at = now()
    with write_transaction():
        # The user's row locked (PostgreSQL; SQLite's write lock covers it): two
        # creations at once cannot both pass the limit or take the same name.
        if not is_sqlite():
            User.select(User.id).where(User.id == user.id).for_update().execute()
        name, rows = check_new(user, name)
        # A revoked one's name may be used again: its row (kept to say when it was
        # revoked) gives way.
        stale = [r.id for r in rows if r.revoked_at is not None and r.name == name]
        if stale:
            AppPassword.delete().where(AppPassword.id.in_(stale)).execute()
        AppPassword.create(
            user=user,
            name=name,
            secret_hash=_hash(normalise_secret(secret)),
            two_factor=two_factor,
            created_at=at,
        )
        audit.record(
            "app_password_created",
            "ok",
            user=user,
            actor=actor,
            detail=f"{name} ({'two factors' if two_factor else 'password'})",
            client=client,
        )
        outbox.queue(user, "app_password_created", client=client, name=name)
    return secret


def revoke(user: User, name: str, *, actor: str, client: Client = NO_CLIENT) -> bool:
    """Revoke the user's app password named `name`: its next request is refused.
    False (audited as "unchanged") if there is no such working one."""
    with write_transaction():
        count = (
            AppPassword.update(revoked_at=now())
            .where(
                (AppPassword.user == user)
                & (AppPassword.name == " ".join((name or "").split()))
                & AppPassword.revoked_at.is_null()
            )
            .execute()
        )
        audit.record(
            "app_password_revoked",
            "ok" if count else "unchanged",
            user=user,
            actor=actor,
            detail=name[:NAME_MAX_LENGTH] if name else None,
            client=client,
        )
    return bool(count)


def revoke_all(user: User, *, actor: str, reason: str, client: Client = NO_CLIENT) -> int:
    """Revoke every working app password of the user (an administrator's reset);
    audited when there were any. In the caller's transaction."""
    count = (
        AppPassword.update(revoked_at=now())
        .where((AppPassword.user == user) & AppPassword.revoked_at.is_null())
        .execute()
    )
    if count:
        audit.record(
            "app_password_revoked",
            "ok",
            user=user,
            actor=actor,
            detail=f"all {count} ({reason})",
            client=client,
        )
    return count


def prune_revoked(before: dt.datetime) -> int:
    """Delete app passwords revoked before `before` (`prune`): they work no more, and
    the list need not show them for ever."""
    with write_transaction():
        return (
            AppPassword.delete()
            .where(AppPassword.revoked_at.is_null(False) & (AppPassword.revoked_at < before))
            .execute()
        )


# --- The gateway's check ------------------------------------------------------------------

_HOLDER = Prepared(
    lambda slot: holder_query(
        AppPassword,
        AppPassword.id,
        AppPassword.revoked_at,
        AppPassword.two_factor,
        AppPassword.last_used_at,
        AppPassword.last_used_ip,
        where=AppPassword.secret_hash == slot("secret_hash"),
    )
)
_TOUCH = Prepared(
    lambda slot: AppPassword.update(
        {
            AppPassword.last_used_at: slot("at", AppPassword.last_used_at),
            AppPassword.last_used_ip: slot("ip", AppPassword.last_used_ip),
        }
    ).where(AppPassword.id == slot("id"))
)
_ADDRESS = Prepared(
    lambda slot: (
        AddressThrottle.select(
            AddressThrottle.failures,
            AddressThrottle.last_failure_at,
            AddressThrottle.window_started_at,
        )
        .where(AddressThrottle.key == slot("key"))
        .tuples()
    )
)


def verify(username: str, secret: str | None, client: Client, at: dt.datetime) -> Outcome:
    """Whether `secret` is a working app password of `username` (as the client sent
    them: the username already normalised by the caller), asked from `client`'s address.

    An address that is backing off is refused before anything is checked. The secret
    is found by its hash (one query; the hash of a random secret tells a timing
    observer nothing), and the username it belongs to is compared in constant time.
    A failure is counted on the address and audited (rate-capped); a success writes the
    last use (at most once a minute, or when the address changes)."""
    ip = client.ip or ""
    wait = _address_wait(ip, at)
    if wait:
        _audit_failure(username, "throttled", client)
        return Outcome(None, throttled=True, retry_after=wait)
    holder, row = _find(username, secret)
    if holder is None:
        _count_failure(ip)
        _audit_failure(username, "failed", client)
        return Outcome(None)
    last_used_at, last_used_ip = row
    if (
        last_used_at is None
        or at - _datetime(last_used_at) >= LAST_USED_RESOLUTION
        or (last_used_ip != (client.ip or None))
    ):
        with contextlib.suppress(UNAVAILABLE):  # a busy database does not refuse the client
            _TOUCH.run(at=at, ip=client.ip, id=holder.app_password_id)
    return Outcome(holder)


def _find(username: str, secret: str | None):
    normalised = normalise_secret(secret)
    if normalised is None:
        return None, None
    rows = _HOLDER.run(secret_hash=_hash(normalised))
    if not rows:
        return None, None
    pk, revoked_at, two_factor, last_used_at, last_used_ip, owner, email, _, method = rows[0]
    right_user = hmac.compare_digest(owner.encode("utf-8"), (username or "").encode("utf-8"))
    if not right_user or revoked_at is not None:
        return None, None
    groups = tuple(row[7] for row in rows if row[7] is not None)
    holder = Holder(pk, owner, groups, email, bool(two_factor), method)
    return holder, (last_used_at, last_used_ip)


def _datetime(value) -> dt.datetime:
    # Tuples skip the field's conversion; SQLite hands back text.
    return AppPassword.last_used_at.python_value(value) if isinstance(value, str) else value


def _address_wait(ip: str, at: dt.datetime) -> int:
    """Seconds the address must still wait before its next try (0: it may try). Read
    only: a working app password from an address in good standing writes nothing here."""
    rows = _ADDRESS.run(key=throttle.address_key(ip))
    if not rows:
        return 0
    failures, last_failure_at, window_started_at = rows[0]
    if _datetime(window_started_at) <= at - throttle.ADDRESS_WINDOW or last_failure_at is None:
        return 0
    rules = throttle.policy()
    delay = throttle.delay_after(failures, rules.password_ip_backoff_after, rules.max_delay)
    waited = (at - _datetime(last_failure_at)).total_seconds()
    return min(delay, math.ceil(delay - waited)) if waited < delay else 0


def _count_failure(ip: str) -> None:
    """One failure on the address's hourly count (the same counter as passwords typed
    by untrusted browsers; never the account's own)."""
    with contextlib.suppress(UNAVAILABLE), write_transaction():
        throttle.begin_address_attempt(ip)


def _audit_failure(username: str, outcome: str, client: Client) -> None:
    """One audit row a minute per address at most: a client retrying an old app
    password, or a scanner, must not drown the log (the metrics count every check)."""
    if not audit.cap("app_password_failures").due(client.ip, now().timestamp()):
        return
    # The username as sent (it may name nobody), cut short; never the secret.
    name = (username or "")[:150] or None
    with contextlib.suppress(UNAVAILABLE), write_transaction():
        audit.record("app_password", outcome, username=name, detail="gateway", client=client)
