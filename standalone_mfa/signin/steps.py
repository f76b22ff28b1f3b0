"""The sign-in steps as services: the password, the first code at set-up, the code at
each later login, and signing out. Views call one function each and show the outcome;
the state machine (`state`) decides where the session goes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import request, url_for

from ..accounts import settings
from ..accounts.users import find_user, normalize_username
from ..core import audit, crypto
from ..core.models import User
from ..factors import devices, passwords, recovery, throttle, totp
from . import sessions, state
from .sessions import ServerSession

WRONG_PASSWORD = "The username or password is not right."
TOO_MANY_PASSWORDS = "Too many failed sign-ins for this username. Wait {wait}, then try again."
# One message for a wrong, malformed or already used code: which it was is not said.
WRONG_CODE = (
    "That code is not right, or it was already used. "
    "Wait for the next code in your authenticator app and try again."
)
WRONG_RECOVERY_CODE = (
    "That recovery code is not right, or it was already used. "
    "Check it and try again, or use another one."
)
TOO_MANY = "Too many wrong codes. Please sign in again."
LOCKED = (
    "Two-factor sign-in for this account is locked after too many wrong codes. "
    "Ask an administrator to unlock it."
)


SET_UP = (
    "Your authenticator app is set up. You will need it each time you sign in. "
    "Save your recovery codes before you continue."
)
DRIFT_HINT = (
    "This code was valid about {minutes} {unit} {direction}. "
    "Your phone's clock may be wrong; turn on automatic time."
)
RECOVERY_USED = "Recovery code accepted. You have {count} recovery {noun} left."
RECOVERY_LOW = " Generate new codes on your Account security page soon."
SET_UP_ELSEWHERE = (
    "Your authenticator app was already set up in another window. "
    "Enter the code it shows for this account."
)


@dataclass(frozen=True)
class StepOutcome:
    """What a sign-in step came to; where to go next is the session's state."""

    ok: bool
    message: str | None = None
    # A browser to remember: the token for its cookie and for how many days.
    device_token: str | None = None
    device_days: int = 0


def safe_next_path(target: str | None) -> str | None:
    """`target` if it is a relative path on this site, else None."""
    if not target or len(target) > 2048 or "\\" in target or not target.isprintable():
        return None
    # "//host" and "///host" are read by browsers as another site.
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def submit_password(
    web_session: ServerSession, username: str, password: str, next_url=None, device_token=None
) -> StepOutcome:
    """Check the password; on success move the session past the password step (and
    past the code too, on a device remembered after a code)."""
    name = normalize_username(username)
    attempt = throttle.begin_password_attempt(name)
    user = find_user(name)
    if not attempt.allowed:
        audit.record("login", "throttled", user=user, detail=f"{attempt.retry_after}s")
        return StepOutcome(False, TOO_MANY_PASSWORDS.format(wait=seconds(attempt.retry_after)))
    if not passwords.check_password(user, password or ""):
        # An unknown name is not recorded: people type passwords into the wrong field.
        audit.record("login", "failed", user=user, detail=None if user else "unknown user")
        return StepOutcome(False, WRONG_PASSWORD)
    throttle.password_success(name)
    audit.record("login", "ok", user=user)
    method = settings.mfa_method()
    credential = totp.credential_of(user)
    state.password_accepted(
        web_session,
        user,
        mfa_method=method,
        enrolled=credential is not None,
        remembered=method != "disabled" and devices.recognise(user, credential, device_token),
    )
    record = web_session.record
    record.next_url = safe_next_path(next_url)
    if record.state == state.TOTP_SETUP:
        record.pending_secret_encrypted = crypto.encrypt(totp.new_secret())
    return StepOutcome(True)


def set_up_meanwhile(web_session: ServerSession) -> StepOutcome | None:
    """If this account's set-up was finished in another window, move this pending
    login to the code step (its secret can never be saved now)."""
    if totp.credential_of(web_session.user) is None:
        return None
    return _set_up_elsewhere(web_session)


def pending_secret(web_session: ServerSession) -> str:
    """The secret of this set-up: the same one for the life of the pending login."""
    return crypto.decrypt(web_session.record.pending_secret_encrypted)


def confirm_setup(web_session: ServerSession, raw_code: str | None) -> StepOutcome:
    """Check the first code of a new authenticator and, if right, save it."""
    user = web_session.user
    if totp.credential_of(user) is not None:
        return _set_up_elsewhere(web_session)
    refused = _begin(user)
    if refused:
        return refused
    secret = pending_secret(web_session)
    code = totp.normalize_code(raw_code)
    step = totp.match_pending(secret, code) if code else None
    if step is None:
        return _failed(web_session, user, totp.drift_of_pending(secret, code) if code else None)
    with sessions.transition(web_session):
        credential = totp.enrol(user, secret, step)
        if credential is not None:
            throttle.record_success(user)
            User.update(mfa_reset_at=None).where(User.id == user.id).execute()
            audit.record("totp_enrolled", "ok", user=user)
            show_codes(web_session, recovery.replace_codes(user))
            audit.record("recovery_codes_generated", "ok", user=user)
            state.fire(web_session, "code_confirmed")
    if credential is None:  # a set-up in another window won the race
        return _set_up_elsewhere(web_session)
    return StepOutcome(True, SET_UP)


def verify_code(
    web_session: ServerSession, raw_code: str | None, remember: bool = False
) -> StepOutcome:
    """Check the code at a later login; a time step is accepted once only. With
    `remember` (and the administrator allowing it) the browser is remembered."""
    user = web_session.user
    credential = totp.credential_of(user)
    if credential is None:  # reset by an administrator while this login was pending
        state.fire(web_session, "credential_removed")
        return StepOutcome(False, state.EXPIRED_MESSAGE)
    refused = _begin(user)
    if refused:
        return refused
    code = totp.normalize_code(raw_code, credential.digits)
    step = totp.check_code(credential, code) if code else None
    if step is None:
        return _failed(web_session, user, totp.drift_of(credential, code) if code else None)
    days = settings.remember_days() if remember else 0
    token = None
    with sessions.transition(web_session):
        consumed = step > credential.last_used_step and totp.consume_step(credential, step)
        if consumed:
            throttle.record_success(user)
            audit.record("totp", "ok", user=user)
            if days:
                token = devices.remember(user, credential, days)
            state.fire(web_session, "code_accepted")
    if not consumed:
        audit.record("totp_replay", "refused", user=user)
        return _failed(web_session, user)
    return StepOutcome(True, device_token=token, device_days=days)


def use_recovery_code(web_session: ServerSession, raw_code: str | None) -> StepOutcome:
    """A recovery code in place of the app's code: any unused one of the user's, once.
    It counts against the same throttle as codes."""
    user = web_session.user
    if totp.credential_of(user) is None:  # reset while this login was pending
        state.fire(web_session, "credential_removed")
        return StepOutcome(False, state.EXPIRED_MESSAGE)
    refused = _begin(user)
    if refused:
        return refused
    if recovery.normalize(raw_code) is None:
        return _failed(web_session, user, kind="recovery_code")
    with sessions.transition(web_session):
        spent = recovery.spend(user, raw_code)
        if spent:
            throttle.record_success(user)
            left = recovery.remaining(user)
            audit.record("recovery_code", "ok", user=user, detail=f"{left} left")
            state.fire(web_session, "recovery_code_accepted")
    if not spent:
        return _failed(web_session, user, kind="recovery_code")
    message = RECOVERY_USED.format(count=left, noun="code" if left == 1 else "codes")
    if left <= recovery.LOW_WATER:
        message += RECOVERY_LOW
    return StepOutcome(True, message)


def show_codes(web_session: ServerSession, codes: list[str]) -> None:
    """Keep new recovery codes, encrypted, for the page that shows them once."""
    web_session[state.SHOWN_CODES_KEY] = crypto.encrypt("\n".join(codes))


def shown_codes(web_session: ServerSession) -> list[str]:
    stored = web_session.get(state.SHOWN_CODES_KEY)
    return crypto.decrypt(stored).split("\n") if stored else []


def codes_saved(web_session: ServerSession) -> None:
    """ "I have saved these codes": forget them, and finish the sign-in if pending."""
    web_session.pop(state.SHOWN_CODES_KEY, None)
    if web_session.state == state.RECOVERY_CODES:
        state.fire(web_session, "codes_saved")


def _set_up_elsewhere(web_session: ServerSession) -> StepOutcome:
    """This account's set-up was finished in another window: ask for a code from that
    app instead (not counted as a failure)."""
    state.fire(web_session, "set_up_elsewhere")
    return StepOutcome(False, SET_UP_ELSEWHERE)


def sign_out(web_session: ServerSession) -> None:
    if web_session.state != state.ANONYMOUS:
        audit.record("logout", "ok", user=web_session.user)
        state.fire(web_session, "signed_out")
    web_session.clear()


def _begin(user) -> StepOutcome | None:
    """Claim one attempt from the account's throttle, or say why not (code unseen)."""
    attempt = throttle.begin_attempt(user)
    if attempt.allowed:
        return None
    if attempt.locked:
        audit.record("totp_throttled", "locked", user=user)
        return StepOutcome(False, LOCKED)
    audit.record("totp_throttled", "wait", user=user, detail=f"{attempt.retry_after}s")
    return StepOutcome(
        False, f"Too many wrong codes. Wait {seconds(attempt.retry_after)}, then try again."
    )


def _failed(web_session, user, drift: int | None = None, kind: str = "totp") -> StepOutcome:
    """A wrong code (or recovery code): audited, counted, and the pending login ends
    once there were too many. `drift` is how many time steps away a code was right."""
    audit.record(kind, "failed", user=user, detail="clock drift" if drift else None)
    failures = throttle.failures(user)
    if failures >= throttle.LOCK_AFTER:
        audit.record("totp_locked", "locked", user=user)
    if failures >= throttle.BACKOFF_AFTER:
        state.fire(web_session, "too_many_failures")
        return StepOutcome(False, LOCKED if failures >= throttle.LOCK_AFTER else TOO_MANY)
    if kind == "recovery_code":
        return StepOutcome(False, WRONG_RECOVERY_CODE)
    return StepOutcome(False, drift_hint(drift) if drift else WRONG_CODE)


def seconds(count: int) -> str:
    return f"{count} second" if count == 1 else f"{count} seconds"


def drift_hint(steps: int, period: int = totp.PERIOD) -> str:
    """ "This code was valid about N minutes ago/from now…", for a phone clock that is off."""
    minutes = max(1, round(abs(steps) * period / 60))
    return DRIFT_HINT.format(
        minutes=minutes,
        unit="minute" if minutes == 1 else "minutes",
        direction="ago" if steps < 0 else "from now",
    )


def landing_url(web_session: ServerSession) -> str:
    """Where the browser goes after a step: the next step, or the page it first asked
    for (kept server-side since the password step), or home."""
    record = web_session.record
    if record.state != state.AUTHENTICATED:
        return url_for(state.STATE_HOME[record.state])
    next_path = safe_next_path(record.next_url)
    # `next` is a path inside the app (the guard takes it from request.full_path): under
    # a path prefix (X-Forwarded-Prefix) it lives below the prefix.
    target = request.script_root + next_path if next_path else url_for("auth.home")
    if record.next_url is not None:
        record.next_url = None
        web_session.changed()
    return target
