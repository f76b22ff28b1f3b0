"""One way to prove each factor: sign-in, a user's re-authentication and an
administrator's step-up all check a password, a code or a recovery code here.

Each proof claims an attempt from the account's throttle before the secret is looked
at, checks it, uses it up (a code's time step, a recovery code) and on success sets
the counter back to zero. It is a context manager: the caller's own changes (the
session's next state, its audit row) go into the same transaction as the proof's, so
they are committed together or not at all:

    with proofs.code(user, raw, credential=credential, transaction=...) as proof:
        if proof.ok:
            ...  # what the code allows, in the same transaction

- A code (or recovery code) is checked inside the transaction: the claim, the check,
  the used step and the reset commit at once, and the answer is sent only after that
  commit, so no guess is ever answered without being counted (README, Performance).
- A password is claimed and committed *before* the slow hash is checked (the hash
  must not hold SQLite's write lock); on success the reset joins the transaction. A
  trusted browser's attempt is claimed on its own counter, any other on the client
  address's and the username's (see `password`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..core import audit, messages
from ..core.audit import NO_CLIENT, Client
from ..core.db import write_transaction
from ..core.models import TotpCredential
from . import passwords, recovery, throttle, totp, trusted_browsers

Transaction = Callable[[], AbstractContextManager]


@dataclass(frozen=True)
class Proof:
    """What a proof came to. `problem` is a key of `core.messages`."""

    ok: bool
    problem: str | None = None
    retry_after: int = 0
    failures: int = 0  # the code throttle's count after a failed code
    drift: int | None = None  # how many steps away a wrong code would have been right
    step: int | None = None  # the time step a right code matched
    throttled: bool = False

    @property
    def locked(self) -> bool:
        return self.problem == "locked"

    def message(self) -> str:
        """What to tell the person (never which part of a secret was wrong)."""
        if self.problem in ("code_wait", "password_wait"):
            return messages.wait(self.retry_after, code=self.problem == "code_wait")
        if self.drift:
            return messages.drift_hint(self.drift, totp.PERIOD)
        return messages.text(self.problem)


def _refused(attempt: throttle.Attempt, *, code: bool) -> Proof:
    if attempt.locked:
        return Proof(False, "locked", failures=attempt.failures, throttled=True)
    problem = "code_wait" if code else "password_wait"
    return Proof(
        False, problem, retry_after=attempt.retry_after, failures=attempt.failures, throttled=True
    )


@contextlib.contextmanager
def password(
    username: str,
    user,
    raw: str | None,
    *,
    trusted: str | None = None,
    client: Client = NO_CLIENT,
    transaction: Transaction = write_transaction,
) -> Iterator[Proof]:
    """The password of `user` (None: an unknown `username`, which costs the same time
    and is counted the same way, so the answer never tells which accounts exist).

    Which counters the attempt is claimed on is decided here, and only here:
    - `trusted`, the token of the browser's trusted-browser cookie: if it is a live one
      of `user`, that browser's own counter alone (SC-41);
    - otherwise the client address's counter (when there is an address, SC-42), then
      the username's; either one can refuse. A refused address claims nothing on the
      username, so a cut-off sprayer cannot push its victims' counters further."""
    browser = trusted_browsers.find(user, trusted)
    if browser is not None:
        attempt = throttle.begin_trusted_password_attempt(browser)
    else:
        attempt = throttle.begin_address_attempt(client.ip) if client.ip else _NO_ADDRESS
        if attempt.allowed:
            attempt = throttle.begin_password_attempt(username)
    if not attempt.allowed:
        yield _refused(attempt, code=False)
    elif not passwords.check_password(user, raw or ""):
        yield Proof(False, "wrong_password")
    else:
        with transaction():
            if browser is not None:
                # Not the username's counter: a stranger's failures stay counted.
                throttle.trusted_password_success(browser)
            else:
                throttle.password_success(username)
                if client.ip:
                    throttle.address_success(client.ip)
            yield Proof(True)


_NO_ADDRESS = throttle.Attempt(True)  # the CLI and re-authentication: no address to count


@contextlib.contextmanager
def code(
    user,
    raw: str | None,
    *,
    credential: TotpCredential | None = None,
    secret: str | None = None,
    client: Client,
    transaction: Transaction = write_transaction,
    throttle_row=False,
) -> Iterator[Proof]:
    """A code from the user's saved authenticator (`credential`: its step is used up,
    once, by one conditional UPDATE) or from one being set up (`secret`: the caller
    saves the matched `step` as used). `throttle_row`: the user's code throttle as
    already read, if it was (see `throttle.begin_attempt`)."""
    with transaction():
        yield _check_code(user, raw, credential, secret, client, throttle_row)


def _check_code(user, raw, credential, secret, client, throttle_row) -> Proof:
    attempt = throttle.begin_attempt(user, throttle_row)
    if not attempt.allowed:
        return _refused(attempt, code=True)
    digits = credential.digits if credential is not None else totp.DIGITS
    normalized = totp.normalize_code(raw, digits)
    if credential is not None:
        step = totp.check_code(credential, normalized) if normalized else None
    else:
        step = totp.match_pending(secret, normalized) if normalized else None
    if step is None:
        if normalized is None:
            drift = None
        elif credential is not None:
            drift = totp.drift_of(credential, normalized)
        else:
            drift = totp.drift_of_pending(secret, normalized)
        return _failed(user, attempt, client, drift=drift)
    if credential is not None and not (
        step > credential.last_used_step and totp.consume_step(credential, step)
    ):
        audit.record("totp_replay", "refused", user=user, client=client)
        return _failed(user, attempt, client)
    throttle.record_success(user)
    return Proof(True, step=step)


@contextlib.contextmanager
def recovery_code(
    user, raw: str | None, *, client: Client, transaction: Transaction = write_transaction
) -> Iterator[Proof]:
    """One of the user's unused recovery codes, spent once; counted like a code."""
    with transaction():
        attempt = throttle.begin_attempt(user)
        if not attempt.allowed:
            yield _refused(attempt, code=True)
        elif recovery.spend(user, raw):
            throttle.record_success(user)
            yield Proof(True)
        else:
            yield _failed(user, attempt, client, problem="wrong_recovery_code")


def _failed(user, attempt, client, *, drift=None, problem="wrong_code") -> Proof:
    if attempt.failures >= throttle.policy().lock_after:
        audit.record("totp_locked", "locked", user=user, client=client)
    return Proof(False, problem, failures=attempt.failures, drift=drift)
