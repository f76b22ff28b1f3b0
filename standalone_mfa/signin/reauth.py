"""Step-up: an administrator proves again who they are before changing someone's
account. With an authenticator they enter a current code (used up, like any code, and
counted by the account's code throttle); without one, their password (counted by the
password throttle). The proof counts for `ADMIN_STEP_UP_SECONDS` on this signed-in
session only: it is `WebSession.step_up_at`, which every state transition clears."""

from __future__ import annotations

import datetime as dt

from flask import current_app

from ..core import audit
from ..core.clock import now
from ..factors import passwords, throttle, totp
from . import sessions, state
from .sessions import ServerSession
from .steps import LOCKED, TOO_MANY_PASSWORDS, WRONG_CODE, StepOutcome, seconds

CODE = "code"
PASSWORD = "password"
CONFIRMED = "Thank you. You can make administrative changes for the next {minutes} minutes."
WRONG_PASSWORD = "That password is not right."
CODE_WAIT = "Too many wrong codes. Wait {wait}, then try again."


def method_for(user) -> str:
    """A code if the administrator has an authenticator (the stronger proof), else the
    password."""
    return CODE if totp.credential_of(user) is not None else PASSWORD


def lifetime() -> dt.timedelta:
    return dt.timedelta(seconds=current_app.config["ADMIN_STEP_UP_SECONDS"])


def is_fresh(web_session: ServerSession) -> bool:
    """Did this signed-in session step up recently enough? (A clock that went back
    does not make an old proof count longer.)"""
    record = web_session.record
    if web_session.state != state.AUTHENTICATED or record.step_up_at is None:
        return False
    age = now() - record.step_up_at
    return dt.timedelta(0) <= age <= lifetime()


def submit_code(web_session: ServerSession, raw_code: str | None) -> StepOutcome:
    """Check a current code; each time step serves once, here as at sign-in."""
    user = web_session.user
    credential = totp.credential_of(user)
    if credential is None:  # reset meanwhile: the page will ask for the password
        return StepOutcome(False, "Your authenticator was removed. Enter your password.")
    attempt = throttle.begin_attempt(user)
    if not attempt.allowed:
        audit.record("step_up", "throttled", user=user, actor=user.username, detail=CODE)
        if attempt.locked:
            return StepOutcome(False, LOCKED)
        return StepOutcome(False, CODE_WAIT.format(wait=seconds(attempt.retry_after)))
    code = totp.normalize_code(raw_code, credential.digits)
    step = totp.check_code(credential, code) if code else None
    consumed = False
    if step is not None:
        with sessions.transition(web_session):
            consumed = step > credential.last_used_step and totp.consume_step(credential, step)
            if consumed:
                throttle.record_success(user)
                _grant(web_session, CODE)
        if not consumed:
            audit.record("totp_replay", "refused", user=user, detail="step-up")
    if not consumed:
        audit.record("step_up", "failed", user=user, actor=user.username, detail=CODE)
        return StepOutcome(False, WRONG_CODE)
    return StepOutcome(True, _confirmed())


def submit_password(web_session: ServerSession, password: str | None) -> StepOutcome:
    """Check the administrator's own password."""
    user = web_session.user
    attempt = throttle.begin_password_attempt(user.username)
    if not attempt.allowed:
        audit.record("step_up", "throttled", user=user, actor=user.username, detail=PASSWORD)
        return StepOutcome(False, TOO_MANY_PASSWORDS.format(wait=seconds(attempt.retry_after)))
    if not passwords.check_password(user, password or ""):
        audit.record("step_up", "failed", user=user, actor=user.username, detail=PASSWORD)
        return StepOutcome(False, WRONG_PASSWORD)
    with sessions.transition(web_session):
        throttle.password_success(user.username)
        _grant(web_session, PASSWORD)
    return StepOutcome(True, _confirmed())


def _grant(web_session: ServerSession, how: str) -> None:
    user = web_session.user
    web_session.record.step_up_at = now()
    web_session.changed()
    audit.record("step_up", "ok", user=user, actor=user.username, detail=how)


def _confirmed() -> str:
    return CONFIRMED.format(minutes=max(1, round(lifetime().total_seconds() / 60)))
