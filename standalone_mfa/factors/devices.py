"""Remembered devices: after a right code, a browser may skip the code (never the
password) for the number of days the administrator allows.

The cookie holds a random token only; the server keeps its hash, bound to the user,
the credential the code was checked against and the password hash of that moment. A
reset, a new authenticator, a password change or "Forget all remembered devices"
therefore revokes it on the server, whatever the browser still holds.
"""

from __future__ import annotations

import datetime as dt

from flask import request

from ..accounts import settings
from ..core import audit, crypto
from ..core.clock import now
from ..core.models import RememberedDevice
from ..web.cookies import cookie_policy

COOKIE_NAME = "smfa_device"
MAX_TOKEN_LENGTH = 128


def _fingerprint(user) -> str:
    # A password change gives a new hash, so every device remembered before it fails.
    return crypto.hash_token(user.password_hash)


def remember(user, credential, days: int) -> str:
    """Remember this browser for `days`; returns the token for its cookie."""
    token = crypto.new_token()
    at = now()
    agent = request.user_agent.string or None
    RememberedDevice.create(
        user=user,
        credential=credential,
        token_hash=crypto.hash_token(token),
        password_fingerprint=_fingerprint(user),
        created_at=at,
        expires_at=at + dt.timedelta(days=days),
        ip=request.remote_addr,
        user_agent=agent[:255] if agent else None,
    )
    audit.record("device_remembered", "ok", user=user, detail=f"{days} days")
    return token


def recognise(user, credential, token: str | None) -> bool:
    """Whether `token` is a live remembered device of `user` for this credential and
    this password. A used device is noted and audited."""
    if not token or len(token) > MAX_TOKEN_LENGTH or credential is None:
        return False
    if settings.remember_days() == 0:  # the administrator turned the feature off
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
    audit.record("remembered_device", "used", user=user)
    return True


def active_devices(user) -> list[RememberedDevice]:
    return list(
        RememberedDevice.select()
        .where((RememberedDevice.user == user) & (RememberedDevice.expires_at > now()))
        .order_by(RememberedDevice.created_at.desc())
    )


def forget_all(user, *, actor: str, reason: str) -> int:
    """Revoke every remembered device of `user`; audited when there were any."""
    count = RememberedDevice.delete().where(RememberedDevice.user == user).execute()
    if count:
        audit.record(
            "remembered_device", "revoked", user=user, actor=actor, detail=f"{count} ({reason})"
        )
    return count


def limit_lifetime(days: int, *, actor: str) -> int:
    """The administrator changed the number of days: 0 forgets every device; fewer
    days shorten the devices remembered before. Returns how many were revoked."""
    if days == 0:
        count = RememberedDevice.delete().execute()
        if count:
            audit.record(
                "remembered_device", "revoked", actor=actor, detail=f"{count} (turned off)"
            )
        return count
    for device in RememberedDevice.select():  # few rows; date maths differs per engine
        latest = device.created_at + dt.timedelta(days=days)
        if device.expires_at > latest:
            RememberedDevice.update(expires_at=latest).where(
                RememberedDevice.id == device.id
            ).execute()
    return 0


def set_cookie(response, token: str, days: int) -> None:
    # Secure, prefixed and scoped like the session cookie (see `cookies`); Lax so
    # that following a link to the site still carries it.
    cookie_policy().set(response, COOKIE_NAME, token, max_age=days * 24 * 3600)


def cookie_token() -> str | None:
    return request.cookies.get(cookie_policy().name(COOKIE_NAME))


def expired(now: dt.datetime) -> int:
    """Delete devices past their day (for `maintenance.prune`)."""
    return RememberedDevice.delete().where(RememberedDevice.expires_at <= now).execute()
