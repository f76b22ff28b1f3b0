"""Encryption of secrets at rest (TOTP secrets) and hashing of bearer secrets.

TOTP secrets must be readable by the server, so they are encrypted with Fernet under
`MFA_ENCRYPTION_KEYS` (newest first; older keys still decrypt, so keys can rotate).
Tokens the server only has to recognise (session ids, API tokens) are hashed.
"""

from __future__ import annotations

import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

__all__ = ["InvalidToken", "decrypt", "encrypt", "hash_token", "new_token", "generate_key"]


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _fernet() -> MultiFernet:
    return current_app.extensions["standalone_mfa.fernet"]


def build_fernet(keys: list[str]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    return _fernet().decrypt(ciphertext.encode("ascii")).decode("utf-8")


def rotate(ciphertext: str) -> str:
    """Re-encrypt under the newest key."""
    return _fernet().rotate(ciphertext.encode("ascii")).decode("ascii")


def new_token(nbytes: int = 32) -> str:
    """A random bearer secret: 256 bits by default, URL-safe."""
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """High-entropy tokens need no slow hash: SHA-256 makes a stolen table useless."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
