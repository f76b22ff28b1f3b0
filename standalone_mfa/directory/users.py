"""Accounts: creating and finding users. Usernames are lower-case and limited to
characters that are safe in an otpauth label (no colon, no spaces)."""

from __future__ import annotations

import re

from peewee import IntegrityError

from ..core import audit
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.models import User
from ..factors import passwords

USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,149}", re.ASCII)


class UserError(ValueError):
    pass


def normalize_username(username: str | None) -> str:
    return (username or "").strip().lower()


def find_user(username: str | None) -> User | None:
    name = normalize_username(username)
    if not USERNAME_PATTERN.fullmatch(name):
        return None
    return User.get_or_none(User.username == name)


def create_user(
    username: str,
    password: str,
    *,
    is_admin: bool = False,
    actor=None,
    client: Client = NO_CLIENT,
) -> User:
    name = normalize_username(username)
    if not USERNAME_PATTERN.fullmatch(name):
        raise UserError(
            "A username is 1-150 characters: letters, digits and . _ @ + - "
            "(starting with a letter or digit)."
        )
    if len(password) < passwords.MIN_LENGTH:
        raise UserError(f"A password needs at least {passwords.MIN_LENGTH} characters.")
    if len(password) > passwords.MAX_LENGTH:
        raise UserError(f"A password can have at most {passwords.MAX_LENGTH} characters.")
    try:
        user = User.create(
            username=name,
            password_hash=passwords.hash_password(password),
            is_admin=is_admin,
            created_at=now(),
        )
    except IntegrityError:
        raise UserError(f"User {name!r} already exists.") from None
    audit.record(
        "user_created",
        "ok",
        user=user,
        actor=actor,
        detail="admin" if is_admin else None,
        client=client,
    )
    return user
