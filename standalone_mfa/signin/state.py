"""The sign-in state machine: its states, its one transition table and the guard.

Every browser request passes `guard()`: the session's state alone decides which
pages answer. Views never write a state; they call `fire()` with an event, and the
table below (drawn in README's diagram) says where that leads. Each transition gives
the session a new id.
"""

from __future__ import annotations

import datetime as dt

from flask import current_app, flash, redirect, request, session, url_for

from ..accounts import settings
from ..core import audit
from ..core.clock import now
from .sessions import ANONYMOUS, ServerSession

PASSWORD_OK = "password_ok"
TOTP_SETUP = "totp_setup"
TOTP_VERIFY = "totp_verify"
RECOVERY_CODES = "recovery_codes"  # set-up done: the new recovery codes are shown once
AUTHENTICATED = "authenticated"
STATES = (ANONYMOUS, PASSWORD_OK, TOTP_SETUP, TOTP_VERIFY, RECOVERY_CODES, AUTHENTICATED)

# (from state, event, to state): the whole machine. README's mermaid diagram matches
# this table line for line (a test compares them).
TRANSITIONS = (
    (ANONYMOUS, "password_accepted", PASSWORD_OK),
    (PASSWORD_OK, "mfa_disabled", AUTHENTICATED),
    (PASSWORD_OK, "mfa_not_set_up", TOTP_SETUP),
    (PASSWORD_OK, "mfa_set_up", TOTP_VERIFY),
    (PASSWORD_OK, "device_remembered", AUTHENTICATED),
    (TOTP_SETUP, "code_confirmed", RECOVERY_CODES),
    (RECOVERY_CODES, "codes_saved", AUTHENTICATED),
    (TOTP_VERIFY, "code_accepted", AUTHENTICATED),
    (TOTP_VERIFY, "recovery_code_accepted", AUTHENTICATED),
    (TOTP_SETUP, "expired", ANONYMOUS),
    (TOTP_VERIFY, "expired", ANONYMOUS),
    (RECOVERY_CODES, "expired", ANONYMOUS),
    (TOTP_SETUP, "too_many_failures", ANONYMOUS),
    (TOTP_VERIFY, "too_many_failures", ANONYMOUS),
    (TOTP_SETUP, "set_up_elsewhere", TOTP_VERIFY),
    (TOTP_VERIFY, "credential_removed", ANONYMOUS),
    (TOTP_SETUP, "signed_out", ANONYMOUS),
    (TOTP_VERIFY, "signed_out", ANONYMOUS),
    (RECOVERY_CODES, "signed_out", ANONYMOUS),
    (AUTHENTICATED, "signed_out", ANONYMOUS),
    (AUTHENTICATED, "mfa_required", ANONYMOUS),
)
_NEXT_STATE = {(source, event): target for source, event, target in TRANSITIONS}

# The events that prove the second factor: a code, a recovery code, or a device that
# was itself remembered after a code. The session notes when (see needs_second_factor).
SECOND_FACTOR_EVENTS = {
    "code_confirmed",
    "code_accepted",
    "recovery_code_accepted",
    "device_remembered",
}

PENDING_STATES = (TOTP_SETUP, TOTP_VERIFY, RECOVERY_CODES)
# How long a pending state lives, from when it was entered; reloading never extends it.
PENDING_TIMEOUT_CONFIG = {
    TOTP_SETUP: "MFA_SETUP_TIMEOUT",
    TOTP_VERIFY: "MFA_VERIFY_TIMEOUT",
    RECOVERY_CODES: "MFA_SETUP_TIMEOUT",
}
# Where the recovery codes wait, encrypted, between set-up and "I have saved these".
SHOWN_CODES_KEY = "recovery_codes"
FLASHES_KEY = "_flashes"  # where Flask keeps flashed messages

# Which states each endpoint answers in; any endpoint not named answers only when
# authenticated. The API blueprint authenticates with bearer tokens, never a session;
# the health check needs no one.
ENDPOINT_STATES = {
    "auth.login": {ANONYMOUS},
    "mfa.setup": {TOTP_SETUP},
    "mfa.verify": {TOTP_VERIFY},
    "mfa.recovery": {TOTP_VERIFY},
    "mfa.recovery_codes": {RECOVERY_CODES, AUTHENTICATED},
    "mfa.recovery_codes_download": {RECOVERY_CODES, AUTHENTICATED},
    "auth.logout": set(STATES),
    "static": set(STATES),
}
SESSIONLESS_BLUEPRINTS = {"api", "health"}
# Where a browser is sent when it asks for a page its state does not allow.
STATE_HOME = {
    ANONYMOUS: "auth.login",
    TOTP_SETUP: "mfa.setup",
    TOTP_VERIFY: "mfa.verify",
    RECOVERY_CODES: "mfa.recovery_codes",
    AUTHENTICATED: "auth.home",
}

EXPIRED_MESSAGE = "Your sign-in expired. Please sign in again."
MFA_REQUIRED_MESSAGE = (
    "Your administrator now requires Multi-Factor Authentication. "
    "Please sign in again to continue."
)


class IllegalTransition(RuntimeError):
    pass


def fire(web_session: ServerSession, event: str) -> str:
    """Move the session along the table, or raise if the table does not allow it."""
    source = web_session.state
    target = _NEXT_STATE.get((source, event))
    if target is None:
        raise IllegalTransition(f"{event!r} is not allowed in state {source!r}")
    record = web_session.ensure_record()
    record.state = target
    record.state_since = now()
    record.step_up_at = None  # a step-up belongs to one signed-in session, never the next
    if source == TOTP_SETUP:
        record.pending_secret_encrypted = None
    if target == ANONYMOUS:
        record.user = None
        record.next_url = None
        record.second_factor_at = None
        # Nothing kept for the signed-in user (codes on show, a new authenticator being
        # set up) may reach whoever signs in next in this browser; messages may.
        for key in [k for k in web_session if k != FLASHES_KEY]:
            del web_session[key]
    elif event in SECOND_FACTOR_EVENTS:
        record.second_factor_at = record.state_since
    web_session.rotate()
    return target


def password_accepted(
    web_session: ServerSession, user, *, mfa_method: str, enrolled: bool, remembered: bool
):
    """The password was right: bind the user, then take the branch the policy asks for."""
    fire(web_session, "password_accepted")
    web_session.record.user = user
    if mfa_method == "disabled":
        return fire(web_session, "mfa_disabled")
    if not enrolled:
        return fire(web_session, "mfa_not_set_up")
    return fire(web_session, "device_remembered" if remembered else "mfa_set_up")


def pending_expired(web_session: ServerSession) -> bool:
    state = web_session.state
    if state not in PENDING_STATES:
        return False
    lifetime = dt.timedelta(seconds=current_app.config[PENDING_TIMEOUT_CONFIG[state]])
    return now() - web_session.record.state_since > lifetime


def needs_second_factor(web_session: ServerSession) -> bool:
    """A session signed in with the password alone, now that TOTP is required.

    Checked on every request rather than when the setting changes, so that a sign-in
    racing with the change cannot slip through."""
    if web_session.state != AUTHENTICATED or web_session.record.second_factor_at:
        return False
    return settings.mfa_method() != "disabled"


def allowed(state: str, endpoint: str | None) -> bool:
    return state in ENDPOINT_STATES.get(endpoint, {AUTHENTICATED})


def guard():
    """Before every request: expire a stale pending login, then send the browser to
    the page its state allows if it asked for another."""
    if request.blueprint in SESSIONLESS_BLUEPRINTS or request.endpoint is None:
        return None
    if pending_expired(session):
        audit.record("pending_expired", "ended", user=session.user, detail=session.state)
        fire(session, "expired")
        flash(EXPIRED_MESSAGE, "error")
    elif needs_second_factor(session):
        audit.record("session_ended", "mfa_required", user=session.user)
        fire(session, "mfa_required")
        flash(MFA_REQUIRED_MESSAGE, "error")
    state = session.state
    if allowed(state, request.endpoint):
        return None
    target = url_for(STATE_HOME[state])
    if state == ANONYMOUS and request.method == "GET" and request.path != "/":
        target = url_for(STATE_HOME[state], next=request.full_path.rstrip("?"))
    return redirect(target)
