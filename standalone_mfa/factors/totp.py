"""TOTP credentials (RFC 6238): secrets, the otpauth URI, checking a code against a
window of time steps, and consuming a step exactly once.

The maths is pyotp's. What is ours: which steps are tried, which one a code matched,
and the single conditional UPDATE that makes a step usable only once, however many
processes race for it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote, urlencode

import pyotp
from peewee import IntegrityError

from ..core import crypto
from ..core.clock import clock, now
from ..core.config import setting
from ..core.db import Prepared, db
from ..core.models import TotpCredential

SECRET_CHARS = 32  # base32 characters: 160 bits, as RFC 4226 recommends
DIGITS = 6
PERIOD = 30
ALGORITHM = "SHA1"  # what every common authenticator app supports
_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
_SEPARATORS = re.compile(r"[ \-]")
MAX_CODE_INPUT = 64


def new_secret() -> str:
    """160 random bits (pyotp draws them from `secrets`), unpadded base32."""
    return pyotp.random_base32(SECRET_CHARS)


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type into an app."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def provisioning_uri(secret: str, username: str) -> str:
    """`otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER` (Key URI Format).

    Built here rather than by pyotp, which leaves "/" unescaped in the label and so
    splits an issuer such as "R/D Portal" into two path segments. The defaults (SHA1,
    6 digits, 30 s) are left implicit, as every app reads them."""
    issuer = setting("MFA_ISSUER")
    label = quote(issuer, safe="") + ":" + quote(username, safe="")
    query = urlencode({"secret": secret, "issuer": issuer}, quote_via=quote)
    return f"otpauth://totp/{label}?{query}"


def normalize_code(raw: str | None, digits: int = DIGITS) -> str | None:
    """The code without spaces or dashes if it is exactly `digits` ASCII digits."""
    if raw is None or len(raw) > MAX_CODE_INPUT:
        return None
    code = _SEPARATORS.sub("", raw.strip())
    if len(code) != digits or not code.isascii() or not code.isdigit():
        return None
    return code


class _DecodedOnce(pyotp.TOTP):
    """pyotp's TOTP, whose secret is base32-decoded once: pyotp decodes it again for
    every code it makes, and a check makes up to three."""

    def byte_secret(self) -> bytes:
        decoded = self.__dict__.get("_decoded")
        if decoded is None:
            decoded = self._decoded = super().byte_secret()
        return decoded


def _first_match(secret: str, code: str, for_time: float, offsets, params: dict):
    """(step, offset) for the first of `offsets` (in steps from now) whose code equals
    `code`, or None."""
    otp = _DecodedOnce(
        secret,
        digits=params.get("digits", DIGITS),
        interval=params.get("period", PERIOD),
        digest=_DIGESTS[params.get("algorithm", ALGORITHM)],
    )
    current = otp.timecode(for_time)
    for offset in offsets:
        step = current + offset
        if step >= 0 and hmac.compare_digest(otp.generate_otp(step), code):
            return step, offset
    return None


def match_step(secret: str, code: str, *, for_time: float, window: int, **params) -> int | None:
    """The time step (counter) whose code equals `code`, newest first, or None.
    `params`: the credential's digits, period and algorithm (defaults: 6, 30, SHA1)."""
    found = _first_match(secret, code, for_time, range(window, -window - 1, -1), params)
    return found[0] if found else None


def window() -> int:
    return setting("MFA_TOTP_WINDOW")


def _now_with(credential: TotpCredential) -> dict:
    """The credential's own parameters (SC-23), the current time and the window."""
    return {
        "for_time": clock().timestamp(),
        "window": window(),
        "digits": credential.digits,
        "period": credential.period,
        "algorithm": credential.algorithm,
    }


def check_code(credential: TotpCredential, code: str) -> int | None:
    """Match a code against the credential's own parameters at the current time."""
    return match_step(crypto.decrypt(credential.secret_encrypted), code, **_now_with(credential))


def match_pending(secret: str, code: str) -> int | None:
    return match_step(secret, code, for_time=clock().timestamp(), window=window())


DRIFT_REACH = 10  # steps either side searched for the clock-drift hint (5 minutes)


def drift_steps(secret: str, code: str, *, for_time: float, window: int, **params) -> int | None:
    """How many steps from now a code that failed would have been right (negative: in
    the past), looking only outside the accepted window and within DRIFT_REACH. The
    code is still rejected; this only explains why to someone whose clock is off."""
    offsets = (
        offset
        for distance in range(window + 1, DRIFT_REACH + 1)
        for offset in (-distance, distance)
    )
    found = _first_match(secret, code, for_time, offsets, params)
    return found[1] if found else None


DRIFT_AGREEMENT = 1  # steps two consecutive drifted codes may differ by (SC-44)


def drift_agrees(previous: int | None, current: int | None) -> bool:
    """Do two consecutive failed codes say the same thing about the phone's clock?

    A phone whose clock is off shows codes that all sit at about the same offset from
    now, so its second wrong code lands within DRIFT_AGREEMENT steps of its first. A
    random guess matches one of the 18 steps the hint searches (window 1) about once in
    55,000 tries, and the next guess one of the three steps next to that about once in
    330,000: a guesser practically never sees the hint, and a single lucky code (which
    may still become valid while the login is pending) is never named."""
    if previous is None or current is None:
        return False
    return abs(current - previous) <= DRIFT_AGREEMENT


def drift_of(credential: TotpCredential, code: str) -> int | None:
    return drift_steps(crypto.decrypt(credential.secret_encrypted), code, **_now_with(credential))


def drift_of_pending(secret: str, code: str) -> int | None:
    return drift_steps(secret, code, for_time=clock().timestamp(), window=window())


def consume_step(credential: TotpCredential, step: int) -> bool:
    """Use a step once: the row count of this one UPDATE decides, across processes."""
    return _CONSUME.run(id=credential.id, step=step) == 1


_CONSUME = Prepared(
    lambda slot: TotpCredential.update(last_used_step=slot("step")).where(
        (TotpCredential.id == slot("id")) & (TotpCredential.last_used_step < slot("step"))
    )
)


def credential_of(user) -> TotpCredential | None:
    return TotpCredential.get_or_none(TotpCredential.user == user)


def enrol(user, secret: str, step: int) -> TotpCredential | None:
    """Save a confirmed credential; its confirming step counts as used.

    Returns None when the user already has one (a parallel set-up won)."""
    try:
        with db.atomic():  # a savepoint: the caller's transaction survives the conflict
            return TotpCredential.create(
                user=user,
                secret_encrypted=crypto.encrypt(secret),
                algorithm=ALGORITHM,
                digits=DIGITS,
                period=PERIOD,
                confirmed_at=now(),
                last_used_step=step,
            )
    except IntegrityError:
        return None


def replace_credential(user, secret: str, step: int) -> TotpCredential:
    """A new authenticator in place of the old one (devices remembered with the old
    one go with it, by cascade). Call inside a transaction."""
    delete_credential(user)
    credential = enrol(user, secret, step)
    if credential is None:
        raise RuntimeError("a credential appeared during replacement")
    return credential


def delete_credential(user) -> int:
    return TotpCredential.delete().where(TotpCredential.user == user).execute()
