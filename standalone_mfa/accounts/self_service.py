"""What signed-in users see and change about their own sign-in: the overview, new
recovery codes, a new password, their sessions and remembered devices (a new
authenticator is `authenticator`'s). Every change needs proof of who is asking (the
password, and a code where the second factor is touched) and is audited; the user is
told each time (SC-21)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import audit
from ..core.clock import now
from ..core.db import write_transaction
from ..core.models import AuditEvent, User
from ..factors import devices, passwords, recovery, totp, trusted_browsers, webauthn
from ..notices import outbox
from ..signin import sessions
from ..signin.sessions import ServerSession

SIGN_IN_EVENTS = (
    "login",
    "totp",
    "totp_replay",
    "totp_throttled",
    "totp_locked",
    "recovery_code",
    "remembered_device",
    "webauthn_used",
    "webauthn_clone",
    "logout",
    "pending_expired",
)


@dataclass(frozen=True)
class Overview:
    credential: object | None
    keys: int  # passkeys and security keys
    recovery_codes_left: int
    devices: list
    sessions: list
    events: list


def overview(user: User) -> Overview:
    return Overview(
        credential=totp.credential_of(user),
        keys=len(webauthn.credentials_of(user)),
        recovery_codes_left=recovery.remaining(user),
        devices=devices.active_devices(user),
        sessions=sessions.live_sessions_of(user, now()),
        events=list(
            AuditEvent.select()
            .where((AuditEvent.username == user.username) & AuditEvent.event.in_(SIGN_IN_EVENTS))
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(20)
        ),
    )


def regenerate_recovery_codes(web_session: ServerSession, user: User) -> None:
    """A new set of codes, voiding the old; they are shown once on the codes page."""
    with sessions.transition(web_session):
        sessions.show_codes(web_session, recovery.replace_codes(user))
        audit.record(
            "recovery_codes_generated",
            "ok",
            user=user,
            actor=user.username,
            client=web_session.client,
        )
        outbox.queue(user, "recovery_codes_new", client=web_session.client)


def change_password(web_session: ServerSession, user: User, new_password: str) -> int:
    """Store a new password; other sessions and remembered devices end. Returns how
    many other sessions ended."""
    with sessions.transition(web_session):
        User.update(password_hash=passwords.hash_password(new_password)).where(
            User.id == user.id
        ).execute()
        devices.forget_all(
            user, actor=user.username, reason="password changed", client=web_session.client
        )
        trusted_browsers.forget_all(user)
        ended = sessions.end_other_sessions(web_session, user)
        web_session.rotate()
        audit.record(
            "password_changed",
            "ok",
            user=user,
            detail=f"{ended} other sessions ended",
            client=web_session.client,
        )
        outbox.queue(user, "password_changed", client=web_session.client)
    return ended


def sign_out_other_sessions(web_session: ServerSession, user: User) -> int:
    with write_transaction():
        ended = sessions.end_other_sessions(web_session, user)
        if ended:
            audit.record(
                "session_revoked",
                "ok",
                user=user,
                actor=user.username,
                detail=f"{ended} other sessions",
                client=web_session.client,
            )
    return ended


def forget_devices(web_session: ServerSession, user: User) -> int:
    with write_transaction():
        trusted_browsers.forget_all(user)
        return devices.forget_all(
            user, actor=user.username, reason="by the user", client=web_session.client
        )


def set_language(web_session: ServerSession, user: User, code: str | None) -> bool:
    """Save the language of this user's pages and mails (`code`, already checked to
    be a shipped locale; None: as the browser asks). Audited when it changes."""
    if user.locale == code:
        return False
    with write_transaction():
        User.update(locale=code).where(User.id == user.id).execute()
        audit.record(
            "language_set",
            "ok",
            user=user,
            actor=user.username,
            detail=code or "browser",
            client=web_session.client,
        )
    user.locale = code
    return True
