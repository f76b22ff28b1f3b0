"""How a session signed in, and what that record means: whether it passed a WebAuthn
ceremony (`phishing_resistant`, for the gateway's rules of that name) and its RFC 8176
`amr` values (for OpenID Connect). The record is written by the state machine
(`state.METHOD_OF_EVENT`); this module only reads it. Pure: no Flask, no database."""

from __future__ import annotations

PASSWORD = "password"
CODE = "code"
RECOVERY_CODE = "recovery_code"
REMEMBERED_DEVICE = "remembered_device"
SECURITY_KEY = "security_key"  # a WebAuthn credential after the password
PASSKEY = "passkey"  # a WebAuthn sign-in without a password, the user verified (SC-54)
METHODS = (PASSWORD, CODE, RECOVERY_CODE, REMEMBERED_DEVICE, SECURITY_KEY, PASSKEY)

# RFC 8176 values for each method. A recovery code is a single-use code: "otp" is the
# closest. A remembered device is a cookie (a bearer token, not a proof of possession):
# it has no value. A passkey sign-in is a key's proof of possession and the
# authenticator's check of the user (UV): "hwk" and "user".
_AMR = {
    PASSWORD: ("pwd",),
    CODE: ("otp",),
    RECOVERY_CODE: ("otp",),
    REMEMBERED_DEVICE: (),
    SECURITY_KEY: ("hwk",),
    PASSKEY: ("hwk", "user"),
}
_KNOWN = {"pwd", "user"}  # something known (or, for "user", the verified user)
_HELD = {"otp", "hwk"}  # something held


def parse(recorded: str | None) -> tuple[str, ...]:
    """The methods in a session's record (`WebSession.signin_methods`), in order;
    names this code does not know are left out (they prove nothing here)."""
    if not recorded:
        return ()
    return tuple(name for name in recorded.split(",") if name in METHODS)


def phishing_resistant(methods) -> bool:
    """Whether the session passed a WebAuthn ceremony that a look-alike page cannot
    relay: a passkey sign-in (user verification required), or the password and a
    security key. A code, a recovery code and a remembered device never count."""
    methods = set(methods)
    return PASSKEY in methods or {PASSWORD, SECURITY_KEY} <= methods


def amr(methods) -> list[str]:
    """RFC 8176 `amr` values, in the order the methods came, each once; "mfa" when
    something known and something held were both proven."""
    values: list[str] = []
    for method in methods:
        for value in _AMR.get(method, ()):
            if value not in values:
                values.append(value)
    if _KNOWN & set(values) and _HELD & set(values):
        values.append("mfa")
    return values
