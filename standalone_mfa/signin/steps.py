"""The sign-in steps as services: the password, the first code at set-up, the code (or
a recovery code) at each later login, the recovery codes shown once, and signing out.
Views call one function each and show the outcome; the state machine (`state`)
decides where the session goes. Every secret is checked by `factors.proofs`."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from ..core import audit, messages, metrics
from ..core.audit import Client
from ..core.clock import now
from ..core.config import setting
from ..core.db import write_transaction
from ..core.models import User
from ..directory import settings
from ..directory.users import find_user, normalize_username
from ..factors import devices, proofs, recovery, throttle, totp, trusted_browsers, webauthn
from ..notices import outbox
from . import destinations, policy, sessions, setup_secret, state
from .sessions import ServerSession

# Set on a sign-in's set-up page while the user's grace lasts ("Set up later"); never
# on a set-up a gateway rule asked for.
MAY_POSTPONE_KEY = "may_postpone_setup"
# A wrong code after the right password is told at most this often (per user).
WRONG_CODES_EVERY = dt.timedelta(hours=1)


@dataclass(frozen=True)
class StepOutcome:
    """What a sign-in step came to; where to go next is the session's state."""

    ok: bool
    message: str | None = None
    # A browser to remember: the token for its cookie and for how many days.
    device_token: str | None = None
    device_days: int = 0
    # The sign-in is complete and this browser is trusted (SC-41): its cookie's token,
    # made or renewed in the step's own transaction.
    trusted_token: str | None = None


def submit_password(
    web_session: ServerSession,
    username: str,
    password: str | None,
    next_url: str | None = None,
    device_token: str | None = None,
    trusted_token: str | None = None,
) -> StepOutcome:
    """Check the password; on success move the session past the password step (and
    past the code too, on a device remembered after a code). `trusted_token`: the
    browser's trusted-browser cookie, if any (its own wrong-password counter)."""
    client = web_session.client
    name = normalize_username(username)
    user = find_user(name)
    remembered = None
    with proofs.password(
        name,
        user,
        password,
        trusted=trusted_token,
        client=client,
        transaction=lambda: sessions.transition(web_session),
    ) as proof:
        if proof.ok:
            audit.record("login", "ok", user=user, client=client)
            remembered = _past_password(web_session, user, next_url, device_token)
    _count("password", proof)
    if proof.ok and remembered is not None:
        metrics.signin("remembered_device", "ok" if remembered else "failed")
    if proof.throttled:
        audit.record(
            "login", "throttled", user=user, detail=f"{proof.retry_after}s", client=client
        )
        return StepOutcome(False, proof.message())
    if not proof.ok:
        # An unknown name is not recorded: people type passwords into the wrong field.
        detail = None if user else "unknown user"
        audit.record("login", "failed", user=user, detail=detail, client=client)
        return StepOutcome(False, messages.text("wrong_password_or_username"))
    return StepOutcome(True)


def sign_in_with_passkey(
    web_session: ServerSession,
    raw_credential: str | None,
    next_url: str | None = None,
    trusted_token: str | None = None,
) -> StepOutcome:
    """A passkey sign-in (no username, no password): the browser's answer to the
    sign-in page's usernameless options (`raw_credential`: `credential.toJSON()`).
    Verified with user verification required, it counts as both factors: the session
    goes from anonymous to signed in in one step, with a new id. Whatever was wrong,
    the answer is the same, so it reveals nothing about which usernames exist."""
    client = web_session.client
    at = now()
    binding = webauthn.binding_of(web_session)
    trusted = None
    with proofs.passkey(
        raw_credential,
        binding=binding,
        at=at,
        client=client,
        transaction=lambda: sessions.transition(web_session),
    ) as proof:
        if proof.ok:
            user = proof.user
            audit.record("login", "ok", user=user, detail="passkey", client=client)
            state.passkey_accepted(web_session, user, at)
            web_session.record.next_url = destinations.safe_destination(next_url, _cookie_domain())
            trusted = trusted_browsers.trust(user, trusted_token, days=_trusted_days())
    metrics.signin("passkey", "ok" if proof.ok else "throttled" if proof.throttled else "failed")
    if proof.throttled:
        audit.record("login", "throttled", user=proof.user, detail="passkey", client=client)
    if not proof.ok:
        return StepOutcome(False, proof.message())
    return StepOutcome(True, trusted_token=trusted)


def _past_password(web_session: ServerSession, user: User, next_url, device_token):
    """Move past the password, down the branch the MFA policy decides (`policy`);
    whether a remembered-device cookie skipped the code (None: there was none to look
    at). The first sign-in that requires set-up starts the user's grace."""
    at = now()
    rules = policy.current()
    credential = totp.credential_of(user)
    enrolled = credential is not None or webauthn.has_keys(user)
    requirement = policy.requirement_of(user, at, policy=rules, enrolled=enrolled)
    asks_code = requirement.outcome == policy.CODE
    remembered = (
        asks_code
        and bool(device_token)
        and credential is not None  # a device is remembered after a code of this app
        and devices.recognise(
            user,
            credential,
            device_token,
            remember_days=settings.remember_days(),
            client=web_session.client,
        )
    )
    policy.start_grace(user, requirement, at)
    state.password_accepted(
        web_session, user, at, outcome=requirement.outcome, remembered=remembered
    )
    record = web_session.record
    record.next_url = destinations.safe_destination(next_url, _cookie_domain())
    if record.state == state.TOTP_SETUP:
        setup_secret.start(web_session, at)
        if requirement.outcome == policy.POSTPONABLE:
            web_session[MAY_POSTPONE_KEY] = True
    return remembered if asks_code and device_token else None


def _cookie_domain() -> str | None:
    return setting("SESSION_COOKIE_DOMAIN")


def _trusted_days() -> int:
    return setting("TRUSTED_BROWSER_DAYS")


def trust_browser(web_session: ServerSession, token: str | None, days: int) -> str | None:
    """After a step: if it completed the sign-in, the token for this browser's
    trusted-browser cookie (the one it holds for this user renewed, or a new one), to
    keep for `days`. None while the sign-in is not complete."""
    if web_session.state != state.AUTHENTICATED or web_session.user is None:
        return None
    with write_transaction():
        return trusted_browsers.trust(web_session.user, token, days=days)


def set_up_meanwhile(web_session: ServerSession) -> StepOutcome | None:
    """If this account's set-up was finished in another window, move this pending
    login to the code step (its secret can never be saved now)."""
    if totp.credential_of(web_session.user) is None:
        return None
    return _set_up_elsewhere(web_session)


def pending_secret(web_session: ServerSession) -> str | None:
    """The secret of this set-up: the same one for the life of the pending login (None
    once it has expired: the guard then ends the pending login)."""
    return setup_secret.secret(web_session, now())


def confirm_setup(web_session: ServerSession, raw_code: str | None) -> StepOutcome:
    """Check the first code of a new authenticator and, if right, save it."""
    user = web_session.user
    client = web_session.client
    if totp.credential_of(user) is not None:
        return _set_up_elsewhere(web_session)
    secret = pending_secret(web_session)
    if secret is None:
        return StepOutcome(False, messages.text("expired"))
    credential = None
    with proofs.code(
        user,
        raw_code,
        secret=secret,
        drift_memory=web_session,
        **sessions.with_session(web_session),
    ) as proof:
        if proof.ok:
            credential = totp.enrol(user, secret, proof.step)
        if credential is not None:
            policy.end_grace(user)
            web_session.pop(MAY_POSTPONE_KEY, None)
            audit.record("totp_enrolled", "ok", user=user, client=client)
            show_new_recovery_codes(web_session)
            # One notice for the set-up: its first recovery codes are part of it.
            outbox.queue(user, "totp_set_up", client=client)
            state.fire(web_session, "code_confirmed", now())
        elif not proof.ok:
            # A wrong first code is for the secret on the screen, not a guess at the
            # user's authenticator: no wrong-codes notice.
            outcome = _failed(web_session, user, proof, tell=False)
    _count("code", proof)
    if proof.ok and credential is None:  # a set-up in another window won the race
        return _set_up_elsewhere(web_session)
    if not proof.ok:
        return outcome
    return StepOutcome(True, messages.text("set_up"))


def verify_code(
    web_session: ServerSession,
    raw_code: str | None,
    remember: bool = False,
    trusted_token: str | None = None,
) -> StepOutcome:
    """Check the code at a later login; a time step is accepted once only. With
    `remember` (and the administrator allowing it) the browser is remembered. The
    browser is trusted (`trusted_token`: the cookie it holds, renewed) in the same
    transaction, so the hot path commits once."""
    user = web_session.user
    client = web_session.client
    if web_session.get(state.KEY_ONLY_KEY):  # not a guess at a code: not counted
        return StepOutcome(False, messages.text("key_only"))
    # The hot path: the session's query already brought the credential and throttle.
    credential, throttle_row = web_session.loaded()
    if credential is None and webauthn.has_keys(user):  # keys only: no code to check
        return StepOutcome(False, messages.text("no_app_use_key"))
    if credential is None:  # reset by an administrator while this login was pending
        state.fire(web_session, "credential_removed", now())
        return StepOutcome(False, messages.text("expired"))
    days = settings.remember_days() if remember else 0
    token = None
    with proofs.code(
        user,
        raw_code,
        credential=credential,
        throttle_row=throttle_row,
        drift_memory=web_session,
        **sessions.with_session(web_session),
    ) as proof:
        if proof.ok:
            audit.record("totp", "ok", user=user, client=client)
            if days:
                token = devices.remember(user, credential, days, client=client)
            state.fire(web_session, "code_accepted", now())
            trusted = trusted_browsers.trust(user, trusted_token, days=_trusted_days())
        else:
            outcome = _failed(web_session, user, proof)
    _count("code", proof)
    if not proof.ok:
        return outcome
    return StepOutcome(True, device_token=token, device_days=days, trusted_token=trusted)


def use_recovery_code(web_session: ServerSession, raw_code: str | None) -> StepOutcome:
    """A recovery code in place of the app's code: any unused one of the user's, once.
    It counts against the same throttle as codes."""
    user = web_session.user
    client = web_session.client
    if web_session.get(state.KEY_ONLY_KEY):
        return StepOutcome(False, messages.text("key_only"))
    if not second_factor_enrolled(user):  # reset while this login was pending
        state.fire(web_session, "credential_removed", now())
        return StepOutcome(False, messages.text("expired"))
    with proofs.recovery_code(
        user, raw_code, drift_memory=web_session, **sessions.with_session(web_session)
    ) as proof:
        if proof.ok:
            left = recovery.remaining(user)
            audit.record("recovery_code", "ok", user=user, detail=f"{left} left", client=client)
            state.fire(web_session, "recovery_code_accepted", now())
        else:
            outcome = _failed(web_session, user, proof, kind="recovery_code")
    _count("recovery_code", proof)
    if not proof.ok:
        return outcome
    message = messages.counted("recovery_used", left)
    if left <= recovery.LOW_WATER:
        message += messages.text("recovery_low")
    return StepOutcome(True, message)


def second_factor_enrolled(user: User) -> bool:
    """An authenticator app, or a passkey or security key: what the code step accepts."""
    return totp.credential_of(user) is not None or webauthn.has_keys(user)


def security_key_options(web_session: ServerSession) -> dict | None:
    """The options for the code step's "Use your security key or passkey" (None: the
    user has no key)."""
    user = web_session.user
    if not webauthn.has_keys(user):
        return None
    binding = webauthn.binding_of(web_session)
    return webauthn.authentication_options(user, binding=binding, at=now())


def verify_security_key(
    web_session: ServerSession, raw: str | None, trusted_token: str | None = None
) -> StepOutcome:
    """One of the user's passkeys or security keys in place of the code: only theirs,
    counted by the code throttle, its challenge this session's and used once."""
    user = web_session.user
    if not second_factor_enrolled(user):  # reset while this login was pending
        state.fire(web_session, "credential_removed", now())
        return StepOutcome(False, messages.text("expired"))
    binding = webauthn.binding_of(web_session)
    with proofs.security_key(
        user, raw, binding=binding, at=now(), **sessions.with_session(web_session)
    ) as proof:
        if proof.ok:
            state.fire(web_session, "security_key_accepted", now())
            trusted = trusted_browsers.trust(user, trusted_token, days=_trusted_days())
        else:
            outcome = _failed(web_session, user, proof, kind="webauthn")
    _count("security_key", proof)
    if not proof.ok:
        return outcome
    return StepOutcome(True, trusted_token=trusted)


def key_registration_options(web_session: ServerSession, kind: str) -> dict:
    """The options to make a passkey or security key for the signed-in (or setting-up)
    user, bound to this session."""
    binding = webauthn.binding_of(web_session)
    return webauthn.registration_options(web_session.user, kind, binding=binding, at=now())


@contextlib.contextmanager
def registering_key(
    web_session: ServerSession, raw: str | None, *, name: str | None, kind: str, at
) -> Iterator[webauthn.Outcome]:
    """The key the browser made for the session's user (`raw`: its answer to this
    session's registration options), verified and saved in the session's transition:
    the caller's own changes on success join it. `kind` is checked by the caller."""
    with sessions.transition(web_session):
        yield webauthn.verify_registration(
            web_session.user, raw, kind=kind, name=name,
            binding=webauthn.binding_of(web_session), at=at, client=web_session.client,
        )  # fmt: skip


def show_new_recovery_codes(web_session: ServerSession) -> None:
    """New recovery codes for the session's user (the old ones stop working), shown
    once on the next page; audited. In the caller's transaction."""
    user = web_session.user
    sessions.show_codes(web_session, recovery.replace_codes(user))
    audit.record("recovery_codes_generated", "ok", user=user, client=web_session.client)


def register_key_at_setup(
    web_session: ServerSession, raw: str | None, *, name: str | None, kind: str
) -> StepOutcome:
    """ "Use a passkey or security key instead" of an authenticator app at set-up: the
    key saved, then new recovery codes shown once, as after an app's first code."""
    if kind not in webauthn.KINDS:
        return StepOutcome(False, messages.text("check_the_form"))
    at = now()
    with registering_key(web_session, raw, name=name, kind=kind, at=at) as outcome:
        if outcome.ok:
            policy.end_grace(web_session.user)
            web_session.pop(MAY_POSTPONE_KEY, None)
            show_new_recovery_codes(web_session)
            state.fire(web_session, "key_registered", at)
    metrics.signin("key_setup", "ok" if outcome.ok else "failed")
    if not outcome.ok:
        return StepOutcome(False, messages.text(outcome.problem))
    return StepOutcome(True, messages.text("set_up_with_key"))


def postpone_setup(web_session: ServerSession) -> StepOutcome:
    """ "Set up later": sign in with the password alone, if this sign-in's set-up may
    still be postponed (asked again now: the grace may have been shortened since the
    password). Not offered on a set-up a gateway rule asked for."""
    user = web_session.user
    at = now()
    requirement = policy.requirement_of(user, at)
    if not web_session.get(MAY_POSTPONE_KEY) or requirement.outcome != policy.POSTPONABLE:
        return StepOutcome(False, messages.text("cannot_postpone"))
    days = requirement.days_left(at)
    with sessions.transition(web_session):
        web_session.pop(MAY_POSTPONE_KEY, None)
        state.fire(web_session, "setup_postponed", at)
        audit.record(
            "setup_postponed",
            "ok",
            user=user,
            detail=f"until {requirement.deadline:%Y-%m-%d %H:%M} UTC",
            client=web_session.client,
        )
    return StepOutcome(True, messages.counted("setup_postponed", days))


def codes_saved(web_session: ServerSession) -> None:
    """ "I have saved these codes": forget them, and finish the sign-in if pending."""
    sessions.forget_shown_codes(web_session)
    if web_session.state == state.RECOVERY_CODES:
        state.fire(web_session, "codes_saved", now())


def _set_up_elsewhere(web_session: ServerSession) -> StepOutcome:
    """This account's set-up was finished in another window: ask for a code from that
    app instead (not counted as a failure)."""
    state.fire(web_session, "set_up_elsewhere", now())
    return StepOutcome(False, messages.text("set_up_elsewhere"))


def require_second_factor(web_session: ServerSession, destination: str) -> None:
    """A protected app's `two_factor` rule asks for the second factor this session has
    not passed (it signed in while the site-wide method was Disabled): take it through
    the code step, or set-up if there is no authenticator yet, then on to
    `destination`. Failing or abandoning that step ends the session, as at sign-in."""
    user = web_session.user
    enrolled = second_factor_enrolled(user)
    with sessions.transition(web_session):
        event = "second_factor_required" if enrolled else "second_factor_set_up_required"
        web_session.pop(MAY_POSTPONE_KEY, None)  # a rule's set-up has no "later"
        at = now()
        state.fire(web_session, event, at)
        record = web_session.record
        record.next_url = destinations.safe_destination(destination, _cookie_domain())
        if record.state == state.TOTP_SETUP:
            setup_secret.start(web_session, at)
        audit.record("second_factor_required", "ok", user=user, client=web_session.client)


def require_phishing_resistance(web_session: ServerSession, destination: str) -> None:
    """A protected app's `phishing_resistant` rule asks for a WebAuthn ceremony this
    session has not passed (it signed in with a code, a recovery code or a remembered
    device): the code step offering only the user's passkeys and security keys, then
    on to `destination`. Failing or abandoning it ends the session, as at sign-in."""
    user = web_session.user
    with sessions.transition(web_session):
        state.fire(web_session, "phishing_resistance_required", now())
        web_session[state.KEY_ONLY_KEY] = True
        web_session.record.next_url = destinations.safe_destination(destination, _cookie_domain())
        audit.record("phishing_resistance_required", "ok", user=user, client=web_session.client)


def sign_out(web_session: ServerSession) -> None:
    if web_session.state != state.ANONYMOUS:
        audit.record("logout", "ok", user=web_session.user, client=web_session.client)
        state.fire(web_session, "signed_out", now())
    web_session.clear()


def sign_out_token(token: str, at: dt.datetime, client: Client) -> None:
    """Sign out the session whose cookie holds `token`, for a browser that sent it but
    may not open it (its binding cookie is missing, SC-67): it asked to sign out, or it
    signed in again and holds another session now. Holding the token was always enough
    to end it; a session already over is left alone."""
    held = sessions.load(token, at, client)
    if held.has_row:
        sign_out(held)
        held.write()


def _count(step: str, proof: proofs.Proof) -> None:
    """The sign-in metric for a step's proof, once its transaction is over."""
    if proof.ok:
        outcome = "ok"
    elif proof.locked:
        outcome = "locked"
    elif proof.throttled:
        outcome = "throttled"
    else:
        outcome = "replay" if proof.replay else "failed"
    metrics.signin(step, outcome)


def _failed(
    web_session, user, proof: proofs.Proof, kind: str = "totp", *, tell: bool = True
) -> StepOutcome:
    """A refused code (or recovery code): audited, the user told (`tell`, see
    `_tell_wrong_codes`), and the pending login ends once there were too many. Runs
    in the proof's transaction."""
    client = web_session.client
    if proof.throttled:
        outcome, detail = ("locked", None) if proof.locked else ("wait", f"{proof.retry_after}s")
        audit.record("totp_throttled", outcome, user=user, detail=detail, client=client)
        return StepOutcome(False, proof.message())
    # Only when the person is told: a lone match near now is as likely a guess (SC-44).
    detail = "clock drift" if proof.drift_confirmed else None
    audit.record(kind, "failed", user=user, detail=detail, client=client)
    rules = throttle.policy()
    if tell:
        _tell_wrong_codes(user, proof, rules, client)
    if proof.failures >= rules.backoff_after:
        state.fire(web_session, "too_many_failures", now())
        locked = proof.failures >= rules.lock_after
        return StepOutcome(False, messages.text("locked" if locked else "too_many_codes"))
    return StepOutcome(False, proof.message())


def _tell_wrong_codes(user, proof: proofs.Proof, rules: throttle.Policy, client) -> None:
    """A wrong code after the right password means someone knows the password: the
    user is told at the first one, and then at most once an hour, so a guesser cannot
    fill their mailbox. Not for a replayed code (it was right: most often the same
    person submitting twice), nor for the attempt that locks, which has its own
    notice (`proofs`). The throttle's compare-and-set has serialised this attempt
    with any other of the user's, so two at once cannot both find no notice."""
    if proof.replay or proof.failures >= rules.lock_after or not outbox.enabled():
        return
    if outbox.recently_queued(user, "wrong_codes", WRONG_CODES_EVERY):
        return
    outbox.queue(user, "wrong_codes", client=client, failures=proof.failures)
