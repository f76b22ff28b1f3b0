"""Password hashing with Werkzeug (scrypt by default).

An unknown username is checked against a dummy hash of the same kind, so a wrong
username and a wrong password cost the same time.
"""

from __future__ import annotations

import functools
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

from ..core.config import setting

MIN_LENGTH = 8
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=setting("PASSWORD_HASH_METHOD"))


@functools.cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def prepare(method: str) -> None:
    """Make the dummy hash now, at start-up: made lazily, the first unknown username
    a process sees would cost two hashes, a one-off timing signal."""
    _dummy_hash(method)


def check_password(user, password: str) -> bool:
    if user is None:
        check_password_hash(_dummy_hash(setting("PASSWORD_HASH_METHOD")), password)
        return False
    return check_password_hash(user.password_hash, password)


def new_random_password() -> str:
    return secrets.token_urlsafe(15)
