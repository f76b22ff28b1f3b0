"""Recovery codes: ten single-use codes that stand in for the authenticator app when
it is lost. Only their hashes are stored; a code is spent by one conditional UPDATE,
so two requests racing with the same code cannot both succeed."""

from __future__ import annotations

import base64
import re
import secrets

from ..core import crypto
from ..core.clock import now
from ..core.models import RecoveryCode

COUNT = 10
CODE_BYTES = 10  # 80 bits: 16 base32 characters
LOW_WATER = 3  # at or below this many left, the user is urged to make new ones
_SEPARATORS = re.compile(r"[\s\-]")
_BASE32 = re.compile(r"[A-Z2-7]{16}")
MAX_INPUT = 64


def _new_code() -> str:
    return base64.b32encode(secrets.token_bytes(CODE_BYTES)).decode("ascii").lower()


def formatted(code: str) -> str:
    """xxxx-xxxx-xxxx-xxxx, as shown and downloaded."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize(raw: str | None) -> str | None:
    """The code as stored (16 base32 characters, upper case), or None if it is not
    shaped like one. Dashes, spaces and letter case do not matter."""
    if raw is None or len(raw) > MAX_INPUT:
        return None
    code = _SEPARATORS.sub("", raw).upper()
    return code if code.isascii() and _BASE32.fullmatch(code) else None


def _hash(normalized: str) -> str:
    return crypto.hash_token(normalized)


def replace_codes(user) -> list[str]:
    """A new set of codes for `user`, voiding the old set; the plain codes are
    returned once, formatted, and never stored. Call inside a transaction."""
    codes = [_new_code() for _ in range(COUNT)]
    RecoveryCode.delete().where(RecoveryCode.user == user).execute()
    at = now()
    RecoveryCode.insert_many(
        [{"user": user.id, "code_hash": _hash(c.upper()), "created_at": at} for c in codes]
    ).execute()
    return [formatted(c) for c in codes]


def spend(user, raw: str | None) -> bool:
    """Use one code of `user` if it is theirs and unused: exactly once, whatever races."""
    code = normalize(raw)
    if code is None:
        return False
    updated = (
        RecoveryCode.update(used_at=now())
        .where(
            (RecoveryCode.user == user)
            & (RecoveryCode.code_hash == _hash(code))
            & RecoveryCode.used_at.is_null()
        )
        .execute()
    )
    return updated == 1


def remaining(user) -> int:
    return (
        RecoveryCode.select()
        .where((RecoveryCode.user == user) & RecoveryCode.used_at.is_null())
        .count()
    )


def ever_made(user) -> bool:
    """Whether `user` has a set of codes, used up or not: someone who set up the app
    before recovery codes existed has none, and is offered to make them rather than
    told "0 left"."""
    return RecoveryCode.select().where(RecoveryCode.user == user).exists()


def delete_codes(user) -> int:
    return RecoveryCode.delete().where(RecoveryCode.user == user).execute()
