"""The sign-in steps as services: the password, the first code at set-up, the code at
each later login, and signing out. Views call one function each and show the outcome;
the state machine (`state`) decides where the session goes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from . import audit, crypto, passwords, settings, state, throttle, totp
from .models import User
from .sessions import ServerSession
from .users import find_user

# One message for a wrong, malformed or already used code: which it was is not said.
WRONG_CODE = (
    "That code is not right, or it was already used. "
    "Wait for the next code in your authenticator app and try again."
)
TOO_MANY = "Too many wrong codes. Please sign in again."
LOCKED = (
    "Two-factor sign-in for this account is locked after too many wrong codes. "
    "Ask an administrator to reset it."
)


@dataclass(frozen=True)
class CodeOutcome:
    ok: bool
    message: str | None = None
    ended: bool = False  # the pending login is over: back to the password


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


def submit_password(web_session: ServerSession, username: str, password: str, next_url=None):
    """Check the password; on success move the session past the password step."""
    user = find_user(username)
    if not passwords.check_password(user, password or ""):
        # An unknown name is not recorded: people type passwords into the wrong field.
        audit.record("login", "failed", user=user, detail=None if user else "unknown user")
        return False
    audit.record("login", "ok", user=user)
    state.password_accepted(
        web_session,
        user,
        mfa_method=settings.mfa_method(),
        enrolled=totp.credential_of(user) is not None,
    )
    record = web_session.record
    record.next_url = safe_next_path(next_url)
    if record.state == state.TOTP_SETUP:
        record.pending_secret_encrypted = crypto.encrypt(totp.new_secret())
    return True


def pending_secret(web_session: ServerSession) -> str:
    """The secret of this set-up: the same one for the life of the pending login."""
    return crypto.decrypt(web_session.record.pending_secret_encrypted)


def confirm_setup(web_session: ServerSession, raw_code: str | None) -> CodeOutcome:
    """Check the first code of a new authenticator and, if right, save it."""
    user = web_session.user
    refused = _begin(web_session, user)
    if refused:
        return refused
    code = totp.normalize_code(raw_code)
    step = totp.match_pending(pending_secret(web_session), code) if code else None
    if step is None or totp.enrol(user, pending_secret(web_session), step) is None:
        return _failed(web_session, user)
    throttle.record_success(user)
    User.update(mfa_reset_at=None).where(User.id == user.id).execute()
    audit.record("totp_enrolled", "ok", user=user)
    state.fire(web_session, "code_confirmed")
    web_session.record.pending_secret_encrypted = None
    return CodeOutcome(True)


def verify_code(web_session: ServerSession, raw_code: str | None) -> CodeOutcome:
    """Check the code at a later login; a time step is accepted once only."""
    user = web_session.user
    refused = _begin(web_session, user)
    if refused:
        return refused
    credential = totp.credential_of(user)
    code = totp.normalize_code(raw_code, credential.digits) if credential else None
    step = totp.check_code(credential, code) if code else None
    if step is None:
        return _failed(web_session, user)
    if step <= credential.last_used_step or not totp.consume_step(credential, step):
        audit.record("totp_replay", "refused", user=user)
        return _failed(web_session, user)
    throttle.record_success(user)
    audit.record("totp", "ok", user=user)
    state.fire(web_session, "code_accepted")
    return CodeOutcome(True)


def sign_out(web_session: ServerSession) -> None:
    if web_session.state != state.ANONYMOUS:
        audit.record("logout", "ok", user=web_session.user)
        state.fire(web_session, "signed_out")
    web_session.clear()


def _begin(web_session, user) -> CodeOutcome | None:
    """Claim one attempt from the account's throttle, or say why not (code unseen)."""
    attempt = throttle.begin_attempt(user)
    if attempt.allowed:
        return None
    if attempt.locked:
        audit.record("totp_throttled", "locked", user=user)
        return CodeOutcome(False, LOCKED)
    audit.record("totp_throttled", "wait", user=user, detail=f"{attempt.retry_after}s")
    return CodeOutcome(
        False, f"Too many wrong codes. Wait {attempt.retry_after} seconds, then try again."
    )


def _failed(web_session, user) -> CodeOutcome:
    audit.record("totp", "failed", user=user)
    failures = throttle.failures(user)
    if failures >= throttle.LOCK_AFTER:
        audit.record("totp_locked", "locked", user=user)
    if failures >= throttle.BACKOFF_AFTER:
        state.fire(web_session, "too_many_failures")
        return CodeOutcome(False, LOCKED if failures >= throttle.LOCK_AFTER else TOO_MANY, True)
    return CodeOutcome(False, WRONG_CODE)


def landing_url(web_session: ServerSession) -> str:
    """Where the browser goes after a step: the next step, or the page it first asked
    for (kept server-side since the password step), or home."""
    from flask import url_for

    record = web_session.record
    if record.state != state.AUTHENTICATED:
        return url_for(state.STATE_HOME[record.state])
    target = safe_next_path(record.next_url) or url_for("auth.home")
    record.next_url = None
    return target
