"""Re-authentication: a signed-in person proves again who they are, before changing
their own sign-in (the password, then a current code, a recovery code or one of their
own passkeys or security keys) or, as an administrator, before changing someone
else's account (a step-up: a current code or one of their own keys, or the password
without an authenticator). Every proof is `factors.proofs`, counted by
the same throttles as sign-in; every outcome is one audit event, `reauth`, whose
detail names the factor (refusals while throttled: one a minute per user).

A step-up counts for `ADMIN_STEP_UP_SECONDS` on this signed-in session only: it is
`WebSession.step_up_at`, which every state transition clears. Every proof that is
right gives the session a new token (SC-67): a copy of the cookie taken before, say by
an app behind the gateway, cannot ride on what the person just proved."""

from __future__ import annotations

import datetime as dt

from ..core import audit, messages
from ..core.clock import now
from ..core.config import setting
from ..core.models import User
from ..factors import proofs, totp, webauthn
from . import sessions, state
from .sessions import ServerSession

CODE = "code"
PASSWORD = "password"
RECOVERY_CODE = "recovery code"
KEY = "security key"  # one of the user's own passkeys or security keys


def _audit(user: User, outcome: str, factor: str, client) -> None:
    audit.record("reauth", outcome, user=user, actor=user.username, detail=factor, client=client)


def _proved(web_session: ServerSession, user: User, factor: str) -> None:
    _audit(user, "ok", factor, web_session.client)
    web_session.renew_token()


def _refused(user: User, proof: proofs.Proof, factor: str, client) -> str:
    """Every wrong answer is audited; a refusal while throttled (no secret looked at)
    once a minute per user at most: a scanner must not write a row per attempt (SC-70)."""
    if not proof.throttled:
        _audit(user, "failed", factor, client)
    elif audit.cap("reauth_throttled").due(user.id, now().timestamp()):
        _audit(user, "throttled", factor, client)
    return proof.message()


def has_second_factor(user: User) -> bool:
    """An authenticator app or keys: what `confirm_identity` then asks for, past the
    password."""
    return totp.credential_of(user) is not None or webauthn.has_keys(user)


def confirm_password(
    web_session: ServerSession, user: User, password: str | None, *, trusted: str | None = None
) -> str | None:
    """Check the user's own password again. None when right; else what to say.
    `trusted`: the browser's trusted-browser cookie, so that a signed-in user's browser
    re-proves on its own counter, whatever a stranger did to the username's (SC-41)."""
    client = web_session.client
    with proofs.password(user.username, user, password, trusted=trusted, client=client) as proof:
        if proof.ok:
            _proved(web_session, user, PASSWORD)
    return None if proof.ok else _refused(user, proof, PASSWORD, client)


def confirm_identity(
    web_session: ServerSession,
    user: User,
    password: str | None,
    code: str | None,
    recovery_code: str | None = None,
    *,
    allow_recovery: bool = False,
    trusted: str | None = None,
    key: str | None = None,
) -> str | None:
    """The password, then (if the user has a second factor) a current code or, where
    allowed, a recovery code; or, in place of those, one of the user's own keys (`key`:
    the browser's answer to `key_options`), the only way for a user whose second
    factor is keys alone. None when both are right; else what to say. A code's step is
    used up; a recovery code is spent; a challenge is used once."""
    problem = confirm_password(web_session, user, password, trusted=trusted)
    if problem:
        return problem
    if key:
        return confirm_key(web_session, user, key)
    credential = totp.credential_of(user)
    keys_only = credential is None and webauthn.has_keys(user)
    if credential is None and not keys_only:
        return None  # the password is all this person signs in with
    if code and credential is not None:
        return confirm_code(web_session, user, code, credential=credential)
    if allow_recovery and recovery_code:
        client = web_session.client
        with proofs.recovery_code(
            user, recovery_code, client=client, drift_memory=web_session
        ) as proof:
            if proof.ok:
                _proved(web_session, user, RECOVERY_CODE)
        return None if proof.ok else _refused(user, proof, RECOVERY_CODE, client)
    # A second factor is asked as at sign-in: a person whose only second factor is a
    # key proves it with the key, never with the password alone.
    if keys_only:
        return messages.text("need_key_or_recovery" if allow_recovery else "need_key")
    return messages.text("need_code_or_recovery" if allow_recovery else "need_code")


def confirm_code(
    web_session: ServerSession, user: User, code: str | None, *, credential=None, secret=None
) -> str | None:
    """A current code of the saved authenticator (or of one being set up: `secret`)."""
    client = web_session.client
    with proofs.code(
        user, code, credential=credential, secret=secret, client=client, drift_memory=web_session
    ) as proof:
        if proof.ok:
            _proved(web_session, user, CODE)
    return None if proof.ok else _refused(user, proof, CODE, client)


def key_options(web_session: ServerSession, user: User) -> dict | None:
    """The options for "Use your security key or passkey" on a re-authentication or
    step-up page (None: the user has no key): only the user's own keys, user
    verification preferred, a challenge of this session's for this purpose alone."""
    if not webauthn.has_keys(user):
        return None
    binding = webauthn.binding_of(web_session)
    return webauthn.authentication_options(
        user, binding=binding, at=now(), purpose=webauthn.REAUTH
    )


def confirm_key(web_session: ServerSession, user: User, raw: str | None) -> str | None:
    """One of the user's own keys, answering this session's `key_options` (SC-51,
    SC-52): counted by the code throttle, audited as a code is."""
    client = web_session.client
    binding = webauthn.binding_of(web_session)
    with proofs.security_key(
        user, raw, binding=binding, at=now(), client=client, purpose=webauthn.REAUTH
    ) as proof:
        if proof.ok:
            _proved(web_session, user, KEY)
    return None if proof.ok else _refused(user, proof, KEY, client)


# The administrators' step-up.


def method_for(user: User) -> str:
    """A code if the administrator has an authenticator, else one of their keys if
    they have keys (their second factor), else the password."""
    if totp.credential_of(user) is not None:
        return CODE
    return KEY if webauthn.has_keys(user) else PASSWORD


def lifetime() -> dt.timedelta:
    return dt.timedelta(seconds=setting("ADMIN_STEP_UP_SECONDS"))


def is_fresh(web_session: ServerSession) -> bool:
    """Did this signed-in session step up recently enough? (A clock that went back
    does not make an old proof count longer.)"""
    record = web_session.record
    if web_session.state != state.AUTHENTICATED or record.step_up_at is None:
        return False
    age = now() - record.step_up_at
    return dt.timedelta(0) <= age <= lifetime()


def step_up(
    web_session: ServerSession,
    secret: str | None,
    *,
    trusted: str | None = None,
    key: str | None = None,
) -> tuple[bool, str]:
    """Prove it is you with the factor `method_for` asks (a code, a key or the
    password), or with one of your own keys (`key`: the browser's answer to
    `key_options`); while it is fresh, administrative changes are allowed. (ok, what
    to say)."""
    user = web_session.user
    method = None if key is not None else method_for(user)
    if key is not None:
        problem = confirm_key(web_session, user, key)
    elif method == CODE:
        credential = totp.credential_of(user)
        problem = confirm_code(web_session, user, secret, credential=credential)
    elif method == KEY:
        problem = messages.text("need_key")
    else:
        problem = confirm_password(web_session, user, secret, trusted=trusted)
    if problem:
        return False, problem
    with sessions.transition(web_session):
        web_session.record.step_up_at = now()
        web_session.changed()
    minutes = max(1, round(lifetime().total_seconds() / 60))
    return True, messages.counted("reauth_confirmed", minutes)
