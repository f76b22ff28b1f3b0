"""An administrator's reset of a user's second factor (lost authenticator app).

The user is told, in the reset's transaction, that "an administrator" did it: the
administrator's name stays in the audit trail. A mailbox is read by more people and
machines than the admin pages, an administrator's account name is worth hiding from
them, and what the user must do is the same whoever it was: ask their administrators.
The address and browser the reset came from are told (none: the command line)."""

from __future__ import annotations

from ..core import audit
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.db import write_transaction
from ..core.models import User
from ..factors import app_passwords, devices, recovery, throttle, totp, trusted_browsers, webauthn
from ..notices import outbox
from ..signin import sessions


def reset_totp(user, *, actor: str, client: Client = NO_CLIENT) -> bool:
    """Delete the credential and its replay state, every passkey and security key, the
    recovery codes, remembered devices and trusted browsers, revoke the app passwords,
    clear the throttle, end every session of the user. Returns False (and changes
    nothing) if the user has neither an authenticator nor a key."""
    with write_transaction():
        keys = len(webauthn.credentials_of(user))
        if totp.credential_of(user) is None and not keys:
            return False  # a locked set-up is unlocked, not reset
        # Devices first: deleting the credential would cascade them away unaudited.
        devices.forget_all(user, actor=actor, reason="reset", client=client)
        totp.delete_credential(user)
        webauthn.remove_all(user)
        recovery.delete_codes(user)
        throttle.clear(user)
        trusted_browsers.forget_all(user)
        # Made with the old factors: whoever holds the lost phone may hold these too.
        app_passwords.revoke_all(user, actor=actor, reason="reset", client=client)
        ended = sessions.end_sessions_of(user)
        User.update(mfa_reset_at=now()).where(User.id == user.id).execute()
        audit.record(
            "totp_reset",
            "ok",
            user=user,
            actor=actor,
            detail=f"{ended} sessions ended, {keys} keys removed",
            client=client,
        )
        outbox.queue(user, "totp_reset", client=client, keys=keys)
    return True


def reset_keys(user, *, actor: str, client: Client = NO_CLIENT) -> int:
    """Delete every passkey and security key of the user (lost or stolen keys) and end
    every session; the authenticator app, if any, stays. Without one the user sets up
    again at the next sign-in (their recovery codes go too). The number removed."""
    with write_transaction():
        names = [key.name for key in webauthn.credentials_of(user)]
        if not names:
            return 0
        webauthn.remove_all(user)
        throttle.clear(user)
        if totp.credential_of(user) is None:
            recovery.delete_codes(user)
            trusted_browsers.forget_all(user)
            User.update(mfa_reset_at=now()).where(User.id == user.id).execute()
        ended = sessions.end_sessions_of(user)
        audit.record(
            "webauthn_reset",
            "ok",
            user=user,
            actor=actor,
            detail=f"{len(names)} keys removed, {ended} sessions ended",
            client=client,
        )
        outbox.queue(user, "webauthn_removed", client=client, name=", ".join(names))
    return len(names)
