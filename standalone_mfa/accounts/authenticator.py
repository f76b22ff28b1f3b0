"""An authenticator set up from Account security, in two flows that share every step
but the last:

- a first one, by a user who has none: one outside the scope of the MFA policy who
  wants it anyway, or one who postponed a required set-up (the banner links here). The
  grace ends, new recovery codes are shown once, and this session counts as having
  passed the second factor;
- a new one, replacing the user's authenticator (a new phone): remembered devices and
  every other session end.

Who is asking is proved first (`web.account`: the password, and for a new one a code
or a recovery code). Then a secret is made (`signin.setup_secret`, the same home and
lifetime as a sign-in's set-up), and saved once the app's first code is right.

From then on the user enters a code at every sign-in while the method is TOTP, in the
scope or not (`signin.policy`); while it is Disabled, nobody is asked for one at sign-in
(the first releases' rule), but a gateway `two_factor` rule still asks for it."""

from __future__ import annotations

from ..core import audit, messages
from ..core.clock import now
from ..core.models import User
from ..factors import devices, proofs, recovery, totp
from ..notices import outbox
from ..signin import policy, sessions, setup_secret
from ..signin.sessions import ServerSession

FROM_ACCOUNT = "from Account security"  # the audit detail of a first set-up here


def start(web_session: ServerSession) -> None:
    """Once who is asking is proved: a new secret for this session."""
    setup_secret.start(web_session, now())


def pending_secret(web_session: ServerSession) -> str | None:
    """The secret being set up, while it has not expired."""
    return setup_secret.secret(web_session, now())


def confirm(web_session: ServerSession, user: User, raw: str | None, *, first: bool):
    """Save the secret being set up once its first code is right: as the user's first
    authenticator (`first`), or in place of their authenticator. None, or what to say."""
    secret = pending_secret(web_session)
    if secret is None:
        return messages.text("new_authenticator_expired")
    event, detail = ("totp_enrolled", FROM_ACCOUNT) if first else ("totp_reenrolled", None)
    saved = False
    with proofs.code(
        user, raw, secret=secret, drift_memory=web_session, **sessions.with_session(web_session)
    ) as proof:
        if proof.ok:
            save = _save_first if first else _replace
            saved = save(web_session, user, secret, proof.step)
        elif not proof.throttled:
            audit.record(event, "failed", user=user, detail=detail, client=web_session.client)
    if not proof.ok:
        return proof.message()
    if not saved:  # a first one set up in another window meanwhile
        setup_secret.cancel(web_session)
        return messages.text("has_authenticator")
    return None


def _save_first(web_session: ServerSession, user: User, secret: str, step: int) -> bool:
    client = web_session.client
    if totp.enrol(user, secret, step) is None:
        return False
    policy.end_grace(user)
    setup_secret.cancel(web_session)
    sessions.show_codes(web_session, recovery.replace_codes(user))
    web_session.record.second_factor_at = now()
    web_session.rotate()
    audit.record("totp_enrolled", "ok", user=user, detail=FROM_ACCOUNT, client=client)
    audit.record("recovery_codes_generated", "ok", user=user, client=client)
    outbox.queue(user, "totp_set_up", client=client)  # as a set-up at sign-in
    return True


def _replace(web_session: ServerSession, user: User, secret: str, step: int) -> bool:
    client = web_session.client
    # Devices first: replacing the credential would cascade them away unaudited.
    devices.forget_all(user, actor=user.username, reason="new authenticator", client=client)
    totp.replace_credential(user, secret, step)
    ended = sessions.end_other_sessions(web_session, user)
    setup_secret.cancel(web_session)
    web_session.rotate()
    audit.record(
        "totp_reenrolled", "ok", user=user, detail=f"{ended} other sessions ended", client=client
    )
    outbox.queue(user, "totp_moved", client=client)
    return True
