"""What signed-in users see and change about their own sign-in: the overview, new
recovery codes, a new authenticator, a new password, their sessions and remembered
devices. Every change needs proof of who is asking (the password, and a code where
the second factor is touched) and is audited; the user is told each time (SC-21)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app

from ..core import audit, crypto
from ..core.clock import clock, now
from ..core.db import write_transaction
from ..core.models import AuditEvent, User, WebSession
from ..factors import devices, passwords, recovery, throttle, totp
from ..signin import sessions
from ..signin.sessions import ServerSession
from ..signin.steps import seconds, show_codes

SIGN_IN_EVENTS = (
    "login",
    "totp",
    "totp_replay",
    "totp_throttled",
    "totp_locked",
    "recovery_code",
    "remembered_device",
    "logout",
    "pending_expired",
)
# The new authenticator being set up from the account page, encrypted, and since when.
NEW_SECRET_KEY = "new_authenticator"
NEW_SECRET_SINCE_KEY = "new_authenticator_since"

WRONG_PASSWORD = "Your password is not right."
WRONG_CODE = "That code is not right, or it was already used."
NEED_CODE = "Enter the current code from your authenticator app."
NEED_CODE_OR_RECOVERY = "Enter the current code from your authenticator app, or a recovery code."
WAIT_PASSWORD = "Too many wrong passwords. Wait {wait}, then try again."
WAIT_CODE = "Too many wrong codes. Wait {wait}, then try again."
LOCKED = "Your two-factor sign-in is locked after too many wrong codes. Ask an administrator."


@dataclass(frozen=True)
class Overview:
    credential: object | None
    recovery_codes_left: int
    devices: list
    sessions: list
    events: list


def overview(user: User) -> Overview:
    return Overview(
        credential=totp.credential_of(user),
        recovery_codes_left=recovery.remaining(user),
        devices=devices.active_devices(user),
        sessions=live_sessions(user),
        events=list(
            AuditEvent.select()
            .where((AuditEvent.username == user.username) & AuditEvent.event.in_(SIGN_IN_EVENTS))
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(20)
        ),
    )


def live_sessions(user: User) -> list[WebSession]:
    """The user's sessions still within the idle and absolute limits (expired rows wait
    for `prune` but are dead: the server refuses them)."""
    config = current_app.config
    at = now()
    idle = at - dt.timedelta(seconds=config["SESSION_IDLE_TIMEOUT"])
    absolute = at - dt.timedelta(seconds=config["SESSION_ABSOLUTE_TIMEOUT"])
    return list(
        WebSession.select()
        .where(
            (WebSession.user == user)
            & (WebSession.last_seen_at >= idle)
            & (WebSession.created_at >= absolute)
        )
        .order_by(WebSession.last_seen_at.desc())
    )


def confirm_password(user: User, password: str | None) -> str | None:
    """Check the user's own password again (throttled like sign-in)."""
    attempt = throttle.begin_password_attempt(user.username)
    if not attempt.allowed:
        audit.record("reauth", "throttled", user=user, detail="password")
        return WAIT_PASSWORD.format(wait=seconds(attempt.retry_after))
    if not passwords.check_password(user, password or ""):
        audit.record("reauth", "failed", user=user, detail="password")
        return WRONG_PASSWORD
    throttle.password_success(user.username)
    return None


def confirm_identity(
    user: User,
    password: str | None,
    code: str | None,
    recovery_code: str | None = None,
    *,
    allow_recovery: bool = False,
) -> str | None:
    """Check the password, then (if the user has an authenticator) a current code or,
    where allowed, a recovery code. None when both are right; else what to say. Both
    checks count against the same throttles as sign-in; a code's step is consumed."""
    problem = confirm_password(user, password)
    if problem:
        return problem
    credential = totp.credential_of(user)
    if credential is None:
        return None
    if not (code or (allow_recovery and recovery_code)):
        return NEED_CODE_OR_RECOVERY if allow_recovery else NEED_CODE
    attempt = throttle.begin_attempt(user)
    if not attempt.allowed:
        audit.record("totp_throttled", "locked" if attempt.locked else "wait", user=user)
        return LOCKED if attempt.locked else WAIT_CODE.format(wait=seconds(attempt.retry_after))
    if code:
        normalized = totp.normalize_code(code, credential.digits)
        step = totp.check_code(credential, normalized) if normalized else None
        fresh = step is not None and step > credential.last_used_step
        if fresh and totp.consume_step(credential, step):
            throttle.record_success(user)
            audit.record("reauth", "ok", user=user, detail="code")
            return None
    elif recovery.spend(user, recovery_code):
        throttle.record_success(user)
        audit.record("recovery_code", "ok", user=user, detail="account page")
        return None
    audit.record("reauth", "failed", user=user, detail="code" if code else "recovery code")
    return WRONG_CODE


def regenerate_recovery_codes(web_session: ServerSession, user: User) -> None:
    """A new set of codes, voiding the old; they are shown once on the codes page."""
    with sessions.transition(web_session):
        show_codes(web_session, recovery.replace_codes(user))
        audit.record("recovery_codes_generated", "ok", user=user, actor=user.username)


def start_new_authenticator(web_session: ServerSession) -> None:
    web_session[NEW_SECRET_KEY] = crypto.encrypt(totp.new_secret())
    web_session[NEW_SECRET_SINCE_KEY] = clock().timestamp()


def new_authenticator_secret(web_session: ServerSession) -> str | None:
    """The secret being set up, while the set-up has not expired."""
    stored = web_session.get(NEW_SECRET_KEY)
    since = web_session.get(NEW_SECRET_SINCE_KEY)
    if not stored or not isinstance(since, (int, float)):
        return None
    if clock().timestamp() - since > current_app.config["MFA_SETUP_TIMEOUT"]:
        cancel_new_authenticator(web_session)
        return None
    return crypto.decrypt(stored)


def cancel_new_authenticator(web_session: ServerSession) -> None:
    web_session.pop(NEW_SECRET_KEY, None)
    web_session.pop(NEW_SECRET_SINCE_KEY, None)


def confirm_new_authenticator(web_session: ServerSession, user: User, raw: str | None):
    """Replace the authenticator once the new app's first code is right. Remembered
    devices of the old one and every other session end. None, or what to say."""
    secret = new_authenticator_secret(web_session)
    if secret is None:
        return "Setting up the new app took too long. Start again."
    attempt = throttle.begin_attempt(user)
    if not attempt.allowed:
        return LOCKED if attempt.locked else WAIT_CODE.format(wait=seconds(attempt.retry_after))
    code = totp.normalize_code(raw)
    step = totp.match_pending(secret, code) if code else None
    if step is None:
        audit.record("totp_reenrolled", "failed", user=user)
        return WRONG_CODE
    with sessions.transition(web_session):
        # Devices first: replacing the credential would cascade them away unaudited.
        devices.forget_all(user, actor=user.username, reason="new authenticator")
        totp.replace_credential(user, secret, step)
        throttle.record_success(user)
        ended = _end_other_sessions(web_session, user)
        cancel_new_authenticator(web_session)
        web_session.rotate()
        audit.record("totp_reenrolled", "ok", user=user, detail=f"{ended} other sessions ended")
    return None


def change_password(web_session: ServerSession, user: User, new_password: str) -> int:
    """Store a new password; other sessions and remembered devices end. Returns how
    many other sessions ended."""
    with sessions.transition(web_session):
        User.update(password_hash=passwords.hash_password(new_password)).where(
            User.id == user.id
        ).execute()
        devices.forget_all(user, actor=user.username, reason="password changed")
        ended = _end_other_sessions(web_session, user)
        web_session.rotate()
        audit.record("password_changed", "ok", user=user, detail=f"{ended} other sessions ended")
    return ended


def sign_out_other_sessions(web_session: ServerSession, user: User) -> int:
    with write_transaction():
        ended = _end_other_sessions(web_session, user)
        if ended:
            audit.record(
                "session_revoked",
                "ok",
                user=user,
                actor=user.username,
                detail=f"{ended} other sessions",
            )
    return ended


def forget_devices(user: User) -> int:
    with write_transaction():
        return devices.forget_all(user, actor=user.username, reason="by the user")


def _end_other_sessions(web_session: ServerSession, user: User) -> int:
    return (
        WebSession.delete()
        .where((WebSession.user == user) & (WebSession.id != web_session.record.id))
        .execute()
    )
