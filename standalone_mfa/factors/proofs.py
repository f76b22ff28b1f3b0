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
  commit, so no guess is ever answered without being counted (docs/development/performance.md).
- A password is claimed and committed *before* the slow hash is checked (the hash
  must not hold SQLite's write lock); on success the reset joins the transaction. A
  trusted browser's attempt is claimed on its own counter, any other on the client
  address's and the username's (see `password`).
- The clock-drift hint ("This code was valid about 3 minutes from now") is given only
  for the second of two consecutive failed codes at the same offset (SC-44): the
  caller passes its session as `drift_memory`, where the last offset is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

from ..core import audit, messages
from ..core.audit import NO_CLIENT, Client
from ..core.db import write_transaction
from ..core.models import TotpCredential
from ..notices import outbox
from . import passwords, recovery, throttle, totp, trusted_browsers, webauthn

Transaction = Callable[[], AbstractContextManager]
# In the caller's session (kept server-side, for one pending login or signed-in
# session): how many steps off the last failed code was, while the next may confirm it.
DRIFT_KEY = "code_drift"


@dataclass(frozen=True)
class Proof:
    """What a proof came to. `problem` is a key of `core.messages`."""

    ok: bool
    problem: str | None = None
    retry_after: int = 0
    failures: int = 0  # the code throttle's count after a failed code
    drift: int | None = None  # how many steps away a wrong code would have been right
    drift_confirmed: bool = False  # and the failed code before it agreed: tell the person
    step: int | None = None  # the time step a right code matched
    throttled: bool = False
    replay: bool = False  # a right code whose time step was already used
    user: object | None = None  # whose passkey signed in (`passkey`)

    @property
    def locked(self) -> bool:
        return self.problem == "locked"

    def message(self) -> str:
        """What to tell the person (never which part of a secret was wrong)."""
        if self.problem == "signin_wait":
            return messages.counted("signin_wait", self.retry_after)
        if self.problem in ("code_wait", "password_wait"):
            return messages.wait(self.retry_after, code=self.problem == "code_wait")
        if self.drift_confirmed:
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
def passkey(
    raw: str | None,
    *,
    binding: str,
    at,
    client: Client = NO_CLIENT,
    transaction: Transaction = write_transaction,
) -> Iterator[Proof]:
    """A passkey sign-in, with no username: `webauthn.verify_authentication` finds the
    key by its id, checks that its `userHandle` names its owner and that the
    authenticator verified the user (SC-54). No account is known before the answer is
    checked, so the attempt is claimed on the client address's counter, the one that
    counts passwords from untrusted browsers (SC-42), in the proof's transaction, and a
    success gives back its claim. Every refusal reads the same, so none tells which
    users or keys exist. An owner whose second factor is locked (too many wrong codes)
    stays locked out.

    As for a code, not a password: the answer is read and its signature checked first
    (`webauthn.read_authentication`: no write, so SQLite's write lock is not held for
    the cryptography), then in one transaction the address's counter allows the
    attempt or not, the challenge is used up, the outcome decided, and the counter's
    one compare-and-set writes it (the claim, given back on success) together with the
    caller's changes: an answer is never sent before its count is committed."""
    answer = webauthn.read_authentication(raw, user=None)
    decided: list[Proof] = []

    def right() -> bool:
        # Asked once the counter allows the attempt, inside the transaction.
        outcome = webauthn.use_authentication(
            answer, user=None, binding=binding, at=at, client=client
        )
        if not (outcome.ok and outcome.user_verified):
            decided.append(Proof(False, outcome.problem or "key_not_accepted"))
        elif throttle.failures(outcome.user) >= throttle.policy().lock_after:
            decided.append(Proof(False, "locked", throttled=True, user=outcome.user))
        else:
            decided.append(Proof(True, user=outcome.user))
        return decided[0].ok

    with transaction():
        attempt = throttle.begin_address_attempt(client.ip, right) if client.ip else None
        if attempt is None:
            right()
        elif not attempt.allowed:
            # Before `right` was asked; or, rarely, after (others' attempts from this
            # address moved the counter past its limit meanwhile): refused all the same.
            yield Proof(False, "signin_wait", retry_after=attempt.retry_after, throttled=True)
            return
        yield decided[0]


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
    drift_memory: MutableMapping | None = None,
) -> Iterator[Proof]:
    """A code from the user's saved authenticator (`credential`: its step is used up,
    once, by one conditional UPDATE) or from one being set up (`secret`: the caller
    saves the matched `step` as used). `throttle_row`: the user's code throttle as
    already read, if it was (see `throttle.begin_attempt`). `drift_memory`: the
    caller's session, for the clock-drift hint (without it, no hint is ever given)."""
    with transaction():
        proof = _check_code(user, raw, credential, secret, client, throttle_row)
        yield _remember_drift(drift_memory, proof)


def _check_code(user, raw, credential, secret, client, throttle_row) -> Proof:
    digits = credential.digits if credential is not None else totp.DIGITS
    normalized = totp.normalize_code(raw, digits)
    step = None

    def right() -> bool:
        # Asked by the throttle once it allows the attempt, so that its one
        # compare-and-set writes the outcome (zero, or one more failure).
        nonlocal step
        if normalized and credential is not None:
            step = totp.check_code(credential, normalized)
        elif normalized:
            step = totp.match_pending(secret, normalized)
        return step is not None

    attempt = throttle.begin_attempt(user, throttle_row, check=right)
    if not attempt.allowed:
        return _refused(attempt, code=True)
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
        attempt = throttle.count_after_all(user, attempt)
        audit.record("totp_replay", "refused", user=user, client=client)
        return replace(_failed(user, attempt, client), replay=True)
    return Proof(True, step=step)  # the claim already set the counter back to zero


@contextlib.contextmanager
def recovery_code(
    user,
    raw: str | None,
    *,
    client: Client,
    transaction: Transaction = write_transaction,
    drift_memory: MutableMapping | None = None,
) -> Iterator[Proof]:
    """One of the user's unused recovery codes, spent once; counted like a code (and,
    like a code without drift, it ends a run of drifted codes in `drift_memory`)."""
    with transaction():
        attempt = throttle.begin_attempt(user)
        if not attempt.allowed:
            yield _refused(attempt, code=True)
        elif recovery.spend(user, raw):
            throttle.record_success(user)
            # Told wherever it is spent (a sign-in or re-proving who one is).
            outbox.queue(user, "recovery_code_used", client=client, left=recovery.remaining(user))
            yield _remember_drift(drift_memory, Proof(True))
        else:
            proof = _failed(user, attempt, client, problem="wrong_recovery_code")
            yield _remember_drift(drift_memory, proof)


@contextlib.contextmanager
def security_key(
    user,
    raw: str | None,
    *,
    binding: str,
    at,
    client: Client,
    transaction: Transaction = write_transaction,
    purpose: str = webauthn.SECOND_FACTOR,
) -> Iterator[Proof]:
    """One of the user's own passkeys or security keys, answering the challenge this
    session was given for `purpose` (the second factor, or `webauthn.REAUTH`;
    `webauthn.verify_authentication`): counted by the same throttle as codes, its
    challenge used up whatever the answer."""
    with transaction():
        attempt = throttle.begin_attempt(user)
        if not attempt.allowed:
            yield _refused(attempt, code=True)
            return
        outcome = webauthn.verify_authentication(
            raw, user=user, binding=binding, at=at, client=client, purpose=purpose
        )
        if outcome.ok:
            throttle.record_success(user)
            yield Proof(True)
        else:
            yield _failed(user, attempt, client, problem=outcome.problem)


def _remember_drift(memory: MutableMapping | None, proof: Proof) -> Proof:
    """Keep this failed code's offset for the next one, and confirm the drift when the
    two agree (`totp.drift_agrees`); a success or a failure without drift forgets it.
    A throttled attempt looked at no code, so it changes nothing."""
    if memory is None or proof.throttled:
        return proof
    previous = memory.pop(DRIFT_KEY, None)
    if proof.ok or proof.drift is None:
        return proof
    memory[DRIFT_KEY] = proof.drift
    if not isinstance(previous, int):
        return proof
    return replace(proof, drift_confirmed=totp.drift_agrees(previous, proof.drift))


def _failed(user, attempt, client, *, drift=None, problem="wrong_code") -> Proof:
    if attempt.failures >= throttle.policy().lock_after:
        # Only the attempt that reaches the lock gets here (later ones are refused
        # before a code is looked at): audited and told once per lock.
        audit.record("totp_locked", "locked", user=user, client=client)
        outbox.queue(user, "second_factor_locked", client=client, failures=attempt.failures)
    return Proof(False, problem, failures=attempt.failures, drift=drift)
