"""A user's own passkeys and security keys, from `/account/passkeys`: adding one (after
re-proving who they are, as for other Account security changes), renaming, removing.

Adding the user's first second factor (no authenticator app, no key yet) is a set-up
as at sign-in: the grace ends, new recovery codes are shown once, and this session
counts as having passed the second factor (as `authenticator`'s first one does)."""

from __future__ import annotations

import datetime as dt

from ..core.clock import now
from ..core.config import setting
from ..factors import totp, webauthn
from ..signin import policy, sessions, steps
from ..signin.sessions import ServerSession

PROVEN_KEY = "passkey_proven_at"  # in the session: when who is asking was proved


def start(web_session: ServerSession) -> None:
    """Who is asking was proved (`reauth.confirm_identity`): a key may be added for a while."""
    with sessions.transition(web_session):
        web_session[PROVEN_KEY] = now().isoformat()


def proven(web_session: ServerSession) -> bool:
    """Whether this session proved who is asking recently enough (MFA_SETUP_TIMEOUT,
    as an authenticator's set-up)."""
    raw = web_session.get(PROVEN_KEY)
    try:
        at = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        at = None
    if at is None:
        return False
    age = now() - at
    return dt.timedelta(0) <= age <= dt.timedelta(seconds=setting("MFA_SETUP_TIMEOUT"))


def options(web_session: ServerSession, kind: str) -> dict:
    return steps.key_registration_options(web_session, kind)


def add(
    web_session: ServerSession, raw: str | None, *, name: str | None, kind: str
) -> webauthn.Outcome:
    """Save the key the browser made (`verify_registration`); a first second factor
    also shows new recovery codes (see the module's docstring)."""
    user = web_session.user
    if kind not in webauthn.KINDS:
        return webauthn.Outcome(False, problem="check_the_form")
    first = totp.credential_of(user) is None and not webauthn.has_keys(user)
    at = now()
    with steps.registering_key(web_session, raw, name=name, kind=kind, at=at) as outcome:
        if outcome.ok:
            web_session.pop(PROVEN_KEY, None)
            if first:
                policy.end_grace(user)
                steps.show_new_recovery_codes(web_session)
                web_session.record.second_factor_at = at
                web_session.rotate()
    return outcome


def first_key_codes_shown(web_session: ServerSession) -> bool:
    """Whether the last `add` was a first key whose recovery codes wait to be seen."""
    return bool(sessions.shown_codes(web_session))


def rename(web_session: ServerSession, credential_id: int, name: str | None) -> webauthn.Outcome:
    return webauthn.rename(web_session.user, credential_id, name, client=web_session.client)


def remove(web_session: ServerSession, credential_id: int) -> str | None:
    return webauthn.remove(web_session.user, credential_id, at=now(), client=web_session.client)
