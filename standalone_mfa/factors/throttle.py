"""Per-account limits on guessing, kept in the database so that every login, session,
process and server of the account shares them. Two counters, one mechanism:

- second-factor codes (`MfaThrottle`, per user): from `MFA_BACKOFF_AFTER` consecutive
  failures each attempt waits 2^(n-MFA_BACKOFF_AFTER) seconds after the last failure
  (at most `BACKOFF_MAX_SECONDS`); at `MFA_LOCK_AFTER` only an administrator can unlock;
- passwords (`PasswordThrottle`, per username as typed, known or not, so the answer
  never tells which accounts exist): the same back-off from
  `PASSWORD_BACKOFF_AFTER` failures, and no hard lock, which anyone could trigger;
- passwords from a trusted browser (`TrustedBrowser`, one that completed a sign-in as
  that user): the same rule on the browser's own counter instead of the username's,
  so a stranger's failures never slow it down (SC-41);
- passwords from one client address (`AddressThrottle`, untrusted browsers only): the
  same back-off from `PASSWORD_IP_BACKOFF_AFTER` attempts in an hour (SC-42).

`factors.proofs.password` decides which of the password counters an attempt uses.

The numbers are configuration (`core.config.KEYS`), read through `policy()`.

Each attempt is counted *before* it is checked, by a compare-and-set on the counter,
so a parallel burst cannot slip extra guesses past the limit; a success sets the
counter back to zero. A code, whose check is pure and fast, may be checked once the
counter allows the attempt and before the compare-and-set, which then writes the
outcome at once (zero for a right code, one more failure for a wrong one): the same
serialisation, one statement instead of a claim and a reset (`begin_attempt`'s `check`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass

from peewee import IntegrityError

from ..core import audit
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.config import setting
from ..core.db import Prepared, db, write_transaction
from ..core.models import AddressThrottle, MfaThrottle, PasswordThrottle, TrustedBrowser

_CAS_TRIES = 20
# How long a client address's count of password attempts lasts from its first one.
ADDRESS_WINDOW = dt.timedelta(hours=1)


def _compare_and_set(model) -> Prepared:
    """The counter's new count (one more failure, or zero for a right code), if it
    still says `seen` (the hot path's statement)."""
    key = model._meta.primary_key
    return Prepared(
        lambda slot: model.update(
            failures=slot("failures"), last_failure_at=slot("at", model.last_failure_at)
        ).where((key == slot("key")) & (model.failures == slot("seen")))
    )


_COMPARE_AND_SET = {
    model: _compare_and_set(model)
    for model in (MfaThrottle, PasswordThrottle, TrustedBrowser, AddressThrottle)
}
_COUNT = Prepared(
    lambda slot: MfaThrottle.update(
        failures=slot("failures"), last_failure_at=slot("at", MfaThrottle.last_failure_at)
    ).where(MfaThrottle.user == slot("user"))
)
_FAILURES = Prepared(
    lambda slot: (
        MfaThrottle.select(MfaThrottle.failures).where(MfaThrottle.user == slot("user")).limit(1)
    )
)
_RESET = Prepared(
    lambda slot: MfaThrottle.update(failures=0, last_failure_at=None).where(
        MfaThrottle.user == slot("user")
    )
)


@dataclass(frozen=True)
class Policy:
    """The throttles' numbers, from the configuration."""

    backoff_after: int
    lock_after: int
    password_backoff_after: int
    max_delay: int
    password_ip_backoff_after: int = 30


def policy() -> Policy:
    """The current app's numbers."""
    return Policy(
        backoff_after=setting("MFA_BACKOFF_AFTER"),
        lock_after=setting("MFA_LOCK_AFTER"),
        password_backoff_after=setting("PASSWORD_BACKOFF_AFTER"),
        max_delay=setting("BACKOFF_MAX_SECONDS"),
        password_ip_backoff_after=setting("PASSWORD_IP_BACKOFF_AFTER"),
    )


@dataclass(frozen=True)
class Attempt:
    allowed: bool
    retry_after: int = 0
    locked: bool = False
    failures: int = 0  # the count with this attempt in it (allowed) or as it stands
    right: bool = False  # `check` said right: the counter was set back to zero
    before: int = 0  # the count this attempt found


def delay_after(failures: int, backoff_after: int, max_delay: int) -> int:
    """Seconds an attempt must wait after the last failure, given n failures."""
    if failures < backoff_after:
        return 0
    return min(2 ** (failures - backoff_after), max_delay)


def _claim(
    model,
    where,
    key: dict | None,
    backoff_after: int,
    lock_after: int | None,
    row=False,
    check: Callable[[], bool] | None = None,
    right_keeps: bool = False,
) -> Attempt:
    """Count one attempt as a failure up front, unless the counter says wait. `row`:
    the counter as the caller already read it (False: read it here); the compare-and-
    set below makes a stale one cost a retry, never a free attempt. `key`: the values
    of a new row (None: the row must exist; gone meanwhile, the attempt waits).
    `check`: the attempt's own check, asked once the counter allows it (never for a
    refused one) and before the compare-and-set, which then writes its outcome: zero
    when it said right (`right_keeps`: the count as it was, the claim given back), one
    more failure when wrong."""
    max_delay = policy().max_delay
    right = None
    for _ in range(_CAS_TRIES):
        if row is False:
            row = model.get_or_none(where)
        if row is None and key is None:  # revoked while this attempt was under way
            return Attempt(False, retry_after=1)
        if row is None:  # first attempt, or an admin just cleared the row: one INSERT claims it
            if right is None and check is not None:
                right = check()
            failures = 0 if right else 1
            try:
                with db.atomic():  # a savepoint inside the caller's transaction
                    model.insert(
                        **key, failures=failures, last_failure_at=None if right else now()
                    ).execute()
            except IntegrityError:  # another request made the row first
                row = False
                continue
            return Attempt(True, failures=failures, right=bool(right))
        if lock_after is not None and row.failures >= lock_after:
            return Attempt(False, locked=True, failures=row.failures)
        at = now()
        delay = delay_after(row.failures, backoff_after, max_delay)
        if delay and row.last_failure_at is not None:
            waited = (at - row.last_failure_at).total_seconds()
            if waited < delay:
                # Never more than the delay itself, even if the clock stepped back.
                retry_after = min(delay, math.ceil(delay - waited))
                return Attempt(False, retry_after=retry_after, failures=row.failures)
        if right is None and check is not None:
            right = check()
        if not right:
            failures, failed_at = row.failures + 1, at
        elif right_keeps:
            failures, failed_at = row.failures, at  # as a claim and its give-back leave it
        else:
            failures, failed_at = 0, None
        claimed = _COMPARE_AND_SET[model].run(
            key=row._pk, seen=row.failures, failures=failures, at=failed_at
        )
        if claimed:
            return Attempt(True, failures=failures, right=bool(right), before=row.failures)
        row = False
    # Lost every race: others are hammering this account right now.
    return Attempt(False, retry_after=1)


# Second-factor codes, per user.


def begin_attempt(user, row=False, check: Callable[[], bool] | None = None) -> Attempt:
    """Claim a code attempt (`row`: the user's MfaThrottle row or None as already
    read, to save a query). With `check` (a pure check of the code, see `_claim`),
    a right one sets the counter back to zero in the same statement; without it, the
    caller calls `record_success` after its own check."""
    rules = policy()
    where = MfaThrottle.user == user
    return _claim(
        MfaThrottle, where, {"user": user}, rules.backoff_after, rules.lock_after, row, check
    )


def record_success(user) -> None:
    _RESET.run(user=user.id)


def count_after_all(user, attempt: Attempt) -> Attempt:
    """The right code of an attempt claimed as right (`begin_attempt`'s `check`) was
    refused after all (its time step already used): counted as the failure it is. The
    claim's compare-and-set holds the row for this transaction."""
    failures = attempt.before + 1
    _COUNT.run(user=user.id, failures=failures, at=now())
    return Attempt(True, failures=failures, before=attempt.before)


def failures(user) -> int:
    found = _FAILURES.run(user=user.id)  # a passkey sign-in asks: a hot path
    return found[0].failures if found else 0


def clear(user) -> None:
    """An administrator's reset or unlock."""
    MfaThrottle.delete().where(MfaThrottle.user == user).execute()


def unlock(user, *, actor: str, client: Client = NO_CLIENT) -> int:
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
        audit.record(
            "unlock", outcome, user=user, actor=actor, detail=f"{forgiven} failures", client=client
        )
    return forgiven


def describe(count: int) -> str:
    """What an administrator needs to know of a failure count: "locked" (only an
    administrator can help), "throttled" (each try waits), "failures" or "ok"."""
    rules = policy()
    if count >= rules.lock_after:
        return "locked"
    if count >= rules.backoff_after:
        return "throttled"
    return "failures" if count else "ok"


# Passwords, per username as typed (normalised), whether or not the account exists.


def _password_key(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8")).hexdigest()


def begin_password_attempt(username: str) -> Attempt:
    key = _password_key(username)
    where = PasswordThrottle.key == key
    return _claim(PasswordThrottle, where, {"key": key}, policy().password_backoff_after, None)


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


# Passwords from a trusted browser: on the browser's own counter (`TrustedBrowser`).


def begin_trusted_password_attempt(browser: TrustedBrowser) -> Attempt:
    """Claim a password attempt on the trusted browser's own counter (`browser`: its
    row as `trusted_browsers.find` read it)."""
    where = TrustedBrowser.id == browser.id
    return _claim(TrustedBrowser, where, None, policy().password_backoff_after, None, browser)


def trusted_password_success(browser: TrustedBrowser) -> None:
    """A right password from the trusted browser: its own counter starts over. The
    username's counter is left alone: a stranger's failures stay counted against them."""
    TrustedBrowser.update(failures=0, last_failure_at=None, last_used_at=now()).where(
        TrustedBrowser.id == browser.id
    ).execute()


# Passwords from one client address (untrusted browsers), per hour.


def address_key(ip: str) -> str:
    """The address's counter key: an IPv6 address counts as its /64 (what one host or
    home is given), an IPv4-mapped one as the IPv4 address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        text = ip
    else:
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.version == 6:
            text = str(ipaddress.ip_network(f"{address}/64", strict=False))
        else:
            text = str(address)
    return hashlib.sha256(("address:" + text).encode("utf-8")).hexdigest()


_ADDRESS_ROW = Prepared(
    lambda slot: AddressThrottle.select().where(AddressThrottle.key == slot("key"))
)
_ADDRESS_WINDOW_OVER = Prepared(
    lambda slot: AddressThrottle.delete().where(
        (AddressThrottle.key == slot("key"))
        & (AddressThrottle.window_started_at <= slot("before", AddressThrottle.window_started_at))
    )
)


def begin_address_attempt(ip: str, check: Callable[[], bool] | None = None) -> Attempt:
    """Claim a password attempt on the client address's counter. The count lasts an
    hour from its first attempt (`ADDRESS_WINDOW`); then the address starts over.
    With `check` (the attempt's own check, asked once the counter allows it; see
    `_claim`), a right attempt gives its claim back in the same statement, as
    `address_success` would after it."""
    key = address_key(ip)
    at = now()
    rows = _ADDRESS_ROW.run(key=key)
    row = rows[0] if rows else None
    if row is not None and row.window_started_at <= at - ADDRESS_WINDOW:
        _ADDRESS_WINDOW_OVER.run(key=key, before=at - ADDRESS_WINDOW)
        row = None
    return _claim(
        AddressThrottle,
        AddressThrottle.key == key,
        {"key": key, "window_started_at": at},
        policy().password_ip_backoff_after,
        None,
        row,
        check,
        right_keeps=True,
    )


def address_success(ip: str) -> None:
    """A right password gives back its own claim, and only that: a guesser with one
    valid account cannot wipe the address's failures by signing in to it."""
    key = address_key(ip)
    AddressThrottle.update(failures=AddressThrottle.failures - 1).where(
        (AddressThrottle.key == key) & (AddressThrottle.failures > 0)
    ).execute()


def address_wait(ip: str) -> int:
    """Seconds the address must wait before its next attempt (0: none), read without
    claiming anything: for a check that counts only its failures (an OpenID client's
    secret at the token endpoint, `begin_address_attempt` after a wrong one)."""
    rows = _ADDRESS_ROW.run(key=address_key(ip))
    row = rows[0] if rows else None
    if row is None or row.last_failure_at is None:
        return 0
    at = now()
    if row.window_started_at <= at - ADDRESS_WINDOW:
        return 0
    delay = delay_after(row.failures, policy().password_ip_backoff_after, policy().max_delay)
    waited = (at - row.last_failure_at).total_seconds()
    return 0 if waited >= delay else min(delay, math.ceil(delay - waited))


def address_failures(ip: str) -> int:
    row = AddressThrottle.get_or_none(AddressThrottle.key == address_key(ip))
    return row.failures if row else 0
