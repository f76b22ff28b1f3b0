"""Remembered devices: after a right code, a browser may skip the code (never the
password) for the number of days the administrator allows.

The cookie holds a random token only; the server keeps its hash, bound to the user,
the credential the code was checked against and the password hash of that moment. A
reset, a new authenticator, a password change or "Forget all remembered devices"
therefore revokes it on the server, whatever the browser still holds.
"""

from __future__ import annotations

import datetime as dt

from ..core import audit, crypto
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.models import RememberedDevice
from ..notices import outbox

MAX_TOKEN_LENGTH = 128


def _fingerprint(user) -> str:
    # A password change gives a new hash, so every device remembered before it fails.
    return crypto.hash_token(user.password_hash)


def remember(user, credential, days: int, *, client: Client) -> str:
    """Remember this browser for `days`; returns the token for its cookie. The user
    is told (in the caller's transaction)."""
    token = crypto.new_token()
    at = now()
    RememberedDevice.create(
        user=user,
        credential=credential,
        token_hash=crypto.hash_token(token),
        password_fingerprint=_fingerprint(user),
        created_at=at,
        expires_at=at + dt.timedelta(days=days),
        ip=client.ip,
        user_agent=client.user_agent,
    )
    audit.record("device_remembered", "ok", user=user, detail=f"{days} days", client=client)
    outbox.queue(user, "device_remembered", client=client, days=days)
    return token


def recognise(user, credential, token: str | None, *, remember_days: int, client: Client) -> bool:
    """Whether `token` is a live remembered device of `user` for this credential and
    this password, while the administrator allows `remember_days` (0: off). A used
    device is noted and audited."""
    if not token or len(token) > MAX_TOKEN_LENGTH or credential is None:
        return False
    if remember_days == 0:  # the administrator turned the feature off
        return False
    device = RememberedDevice.get_or_none(RememberedDevice.token_hash == crypto.hash_token(token))
    if (
        device is None
        or device.user_id != user.id
        or device.credential_id != credential.id
        or device.password_fingerprint != _fingerprint(user)
        or device.expires_at <= now()
    ):
        return False
    RememberedDevice.update(last_used_at=now()).where(RememberedDevice.id == device.id).execute()
    audit.record("remembered_device", "used", user=user, client=client)
    return True


def active_devices(user) -> list[RememberedDevice]:
    return list(
        RememberedDevice.select()
        .where((RememberedDevice.user == user) & (RememberedDevice.expires_at > now()))
        .order_by(RememberedDevice.created_at.desc())
    )


def forget_all(user, *, actor: str, reason: str, client: Client = NO_CLIENT) -> int:
    """Revoke every remembered device of `user`; audited when there were any."""
    count = RememberedDevice.delete().where(RememberedDevice.user == user).execute()
    if count:
        audit.record(
            "remembered_device",
            "revoked",
            user=user,
            actor=actor,
            detail=f"{count} ({reason})",
            client=client,
        )
    return count


def limit_lifetime(days: int, *, actor: str, client: Client = NO_CLIENT) -> int:
    """The administrator changed the number of days: 0 forgets every device; fewer
    days shorten the devices remembered before. Returns how many were revoked."""
    if days == 0:
        count = RememberedDevice.delete().execute()
        if count:
            audit.record(
                "remembered_device",
                "revoked",
                actor=actor,
                detail=f"{count} (turned off)",
                client=client,
            )
        return count
    for device in RememberedDevice.select():  # few rows; date maths differs per engine
        latest = device.created_at + dt.timedelta(days=days)
        if device.expires_at > latest:
            RememberedDevice.update(expires_at=latest).where(
                RememberedDevice.id == device.id
            ).execute()
    return 0


def expired(now: dt.datetime) -> int:
    """Delete devices past their day (for `maintenance.prune`)."""
    return RememberedDevice.delete().where(RememberedDevice.expires_at <= now).execute()
