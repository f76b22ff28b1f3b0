"""A first authenticator set up from Account security, by a user who has none: one
outside the scope of the MFA policy who wants it anyway, or one who postponed a
required set-up (the banner links here). The password is checked first, as for every
sensitive change (`web.account`); then the flow of a new authenticator: a secret kept
encrypted in the session, its first code, and the recovery codes shown once.

From then on the user enters a code at every sign-in while the method is TOTP, in the
scope or not (`signin.policy`); while it is Disabled, nobody is asked for one at sign-in
(the first releases' rule), but a gateway `two_factor` rule still asks for it."""

from __future__ import annotations

from ..core import audit, messages
from ..core.clock import now
from ..factors import proofs, recovery, totp
from ..notices import outbox
from ..signin import policy, sessions
from ..signin.sessions import ServerSession
from . import self_service


def start(web_session: ServerSession) -> None:
    """After the password: a new secret for this session (the same keys, and the same
    time limit, as moving to a new authenticator)."""
    self_service.start_new_authenticator(web_session)


def pending_secret(web_session: ServerSession) -> str | None:
    return self_service.new_authenticator_secret(web_session)


def confirm(web_session: ServerSession, user, raw: str | None) -> str | None:
    """Save the authenticator once its first code is right: the grace (if any) ends,
    new recovery codes wait to be shown once, and this session counts as having passed
    the second factor (that code proved it). None, or what to say."""
    secret = pending_secret(web_session)
    if secret is None:
        return messages.text("new_authenticator_expired")
    client = web_session.client
    credential = None
    with proofs.code(
        user, raw, secret=secret, drift_memory=web_session, **sessions.with_session(web_session)
    ) as proof:
        if proof.ok:
            credential = totp.enrol(user, secret, proof.step)
        if credential is not None:
            policy.end_grace(user)
            self_service.cancel_new_authenticator(web_session)
            sessions.show_codes(web_session, recovery.replace_codes(user))
            web_session.record.second_factor_at = now()
            web_session.rotate()
            audit.record(
                "totp_enrolled", "ok", user=user, detail="from Account security", client=client
            )
            audit.record("recovery_codes_generated", "ok", user=user, client=client)
            outbox.queue(user, "totp_set_up", client=client)  # as a set-up at sign-in
        elif not proof.ok and not proof.throttled:
            audit.record(
                "totp_enrolled", "failed", user=user, detail="from Account security", client=client
            )
    if not proof.ok:
        return proof.message()
    if credential is None:  # set up in another window meanwhile
        self_service.cancel_new_authenticator(web_session)
        return messages.text("has_authenticator")
    return None
