"""Accounts: creating and finding users. Usernames are lower-case and limited to
characters that are safe in an otpauth label (no colon, no spaces)."""

from __future__ import annotations

import re

from peewee import IntegrityError

from ..core import audit, messages
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.models import User
from ..factors import passwords

USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,149}", re.ASCII)


class UserError(ValueError):
    """A user that cannot be made as asked; the message says why, in the reader's
    language (`core.messages`), and nothing was changed."""


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
        raise UserError(messages.text("bad_username"))
    if len(password) < passwords.MIN_LENGTH:
        raise UserError(messages.counted("new_password_too_short", passwords.MIN_LENGTH))
    if len(password) > passwords.MAX_LENGTH:
        raise UserError(messages.counted("new_password_too_long", passwords.MAX_LENGTH))
    try:
        user = User.create(
            username=name,
            password_hash=passwords.hash_password(password),
            is_admin=is_admin,
            created_at=now(),
        )
    except IntegrityError:
        raise UserError(messages.text("user_exists", name=name)) from None
    audit.record(
        "user_created",
        "ok",
        user=user,
        actor=actor,
        detail="admin" if is_admin else None,
        client=client,
    )
    return user
