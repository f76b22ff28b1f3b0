"""The sign-in state machine: its states and its one transition table.

The session's state alone decides which pages answer (the web layer's guard applies
that to every request). Views never write a state; they call `fire()` with an event,
and the table below (drawn in docs/sign-in.md's diagram) says where that leads. Each
transition gives the session a new id. Pure: no Flask, no database.
"""

from __future__ import annotations

import datetime as dt

ANONYMOUS = "anonymous"  # a browser that has not given a right password (or no row yet)
PASSWORD_OK = "password_ok"
TOTP_SETUP = "totp_setup"
TOTP_VERIFY = "totp_verify"
RECOVERY_CODES = "recovery_codes"  # set-up done: the new recovery codes are shown once
AUTHENTICATED = "authenticated"
STATES = (ANONYMOUS, PASSWORD_OK, TOTP_SETUP, TOTP_VERIFY, RECOVERY_CODES, AUTHENTICATED)

# (from state, event, to state): the whole machine. The mermaid diagram in docs/sign-in.md matches
# this table line for line (a test compares them).
TRANSITIONS = (
    (ANONYMOUS, "password_accepted", PASSWORD_OK),
    # A passkey whose authenticator verified the user: both factors in one step.
    (ANONYMOUS, "passkey_accepted", AUTHENTICATED),
    (PASSWORD_OK, "mfa_disabled", AUTHENTICATED),
    # Outside the scope of the policy (signin.policy) and without an authenticator.
    (PASSWORD_OK, "mfa_not_required", AUTHENTICATED),
    (PASSWORD_OK, "mfa_not_set_up", TOTP_SETUP),
    (PASSWORD_OK, "mfa_set_up", TOTP_VERIFY),
    (PASSWORD_OK, "device_remembered", AUTHENTICATED),
    (TOTP_SETUP, "code_confirmed", RECOVERY_CODES),
    # "Set up later", while the user's grace lasts: signed in with the password alone.
    (TOTP_SETUP, "setup_postponed", AUTHENTICATED),
    (RECOVERY_CODES, "codes_saved", AUTHENTICATED),
    (TOTP_VERIFY, "code_accepted", AUTHENTICATED),
    (TOTP_VERIFY, "recovery_code_accepted", AUTHENTICATED),
    # A passkey or security key of the user's in place of the code.
    (TOTP_VERIFY, "security_key_accepted", AUTHENTICATED),
    # "Use a passkey or security key instead": the key saved, then new recovery codes.
    (TOTP_SETUP, "key_registered", RECOVERY_CODES),
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
    # A gateway rule asks for the second factor that this session (signed in while
    # the site-wide method is Disabled) has not passed: the code step, or set-up, and back.
    (AUTHENTICATED, "second_factor_required", TOTP_VERIFY),
    (AUTHENTICATED, "second_factor_set_up_required", TOTP_SETUP),
    # A `phishing_resistant` rule asks for a WebAuthn ceremony this session has not
    # passed: the code step offering only the user's keys (`KEY_ONLY_KEY`), and back.
    (AUTHENTICATED, "phishing_resistance_required", TOTP_VERIFY),
)
_NEXT_STATE = {(source, event): target for source, event, target in TRANSITIONS}

# The events that prove the second factor: a code, a recovery code, a passkey or
# security key, or a device that was itself remembered after a code. The session notes
# when (see needs_second_factor).
SECOND_FACTOR_EVENTS = {
    "passkey_accepted",
    "code_confirmed",
    "code_accepted",
    "recovery_code_accepted",
    "device_remembered",
    "security_key_accepted",
    "key_registered",
}

# How a session signed in: each step that proves something adds its method to the
# session's record (`WebSession.signin_methods`, in the order they came), which going
# back to anonymous clears. `signin.methods` reads it (phishing resistance, `amr`).
METHOD_OF_EVENT = {
    "password_accepted": "password",
    "code_confirmed": "code",
    "code_accepted": "code",
    "recovery_code_accepted": "recovery_code",
    "device_remembered": "remembered_device",
    # One of the user's keys at the code step (a passkey used there counts as a key).
    "security_key_accepted": "security_key",
    # A key made at set-up: as an app's first code, it proves the new factor.
    "key_registered": "security_key",
    "passkey_accepted": "passkey",
}

PENDING_STATES = (TOTP_SETUP, TOTP_VERIFY, RECOVERY_CODES)
# Where the recovery codes wait, encrypted, between set-up and "I have saved these".
SHOWN_CODES_KEY = "recovery_codes"
# When the secret being set up was made (`setup_secret`; the secret is in the row).
SETUP_SINCE_KEY = "setup_since"
FLASHES_KEY = "_flashes"  # where Flask keeps flashed messages
# Set while a `phishing_resistant` rule's code step waits: only a key is accepted there.
KEY_ONLY_KEY = "key_only"


class IllegalTransition(RuntimeError):
    pass


def next_state(source: str, event: str) -> str:
    """Where `event` leads from `source`, or IllegalTransition."""
    target = _NEXT_STATE.get((source, event))
    if target is None:
        raise IllegalTransition(f"{event!r} is not allowed in state {source!r}")
    return target


def fire(web_session, event: str, at: dt.datetime) -> str:
    """Move the session (a `sessions.ServerSession`) along the table at time `at`, or
    raise if the table does not allow it."""
    source = web_session.state
    target = next_state(source, event)
    record = web_session.ensure_record(at)
    record.state = target
    record.state_since = at
    record.step_up_at = None  # a step-up belongs to one signed-in session, never the next
    if source == TOTP_VERIFY:
        web_session.pop(KEY_ONLY_KEY, None)
    if source == TOTP_SETUP or target == ANONYMOUS:
        record.pending_secret_encrypted = None
        web_session.pop(SETUP_SINCE_KEY, None)
    if target == ANONYMOUS:
        record.user = None
        record.next_url = None
        record.second_factor_at = None
        record.signin_methods = None
        # Nothing kept for the signed-in user (codes on show, a new authenticator being
        # set up) may reach whoever signs in next in this browser; messages may.
        for key in [k for k in web_session if k != FLASHES_KEY]:
            del web_session[key]
    else:
        if event in SECOND_FACTOR_EVENTS:
            record.second_factor_at = record.state_since
        method = METHOD_OF_EVENT.get(event)
        if method is not None:
            record.signin_methods = add_method(record.signin_methods, method)
    web_session.rotate()
    return target


def passkey_accepted(web_session, user, at: dt.datetime) -> str:
    """A passkey sign-in was verified (user verification required): bind the user; the
    session is signed in with both factors."""
    target = fire(web_session, "passkey_accepted", at)
    web_session.record.user = user
    return target


def add_method(recorded: str | None, method: str) -> str:
    """The session's record (methods joined by commas) with `method` added, once."""
    methods = recorded.split(",") if recorded else []
    if method not in methods:
        methods.append(method)
    return ",".join(methods)


# Where to go from PASSWORD_OK for each outcome of `signin.policy.decide` (its names:
# this module imports nothing of the package). A postponable set-up is the set-up page,
# with "Set up later" on it.
POLICY_EVENTS = {
    "disabled": "mfa_disabled",
    "not_required": "mfa_not_required",
    "set_up": "mfa_not_set_up",
    "postponable": "mfa_not_set_up",
    "code": "mfa_set_up",
}


def password_accepted(
    web_session, user, at: dt.datetime, *, outcome: str, remembered: bool
) -> str:
    """The password was right: bind the user, then take the branch the policy's
    `outcome` asks for (a remembered device skips the code, never a set-up)."""
    event = POLICY_EVENTS[outcome]  # an outcome without a branch is a bug: KeyError
    fire(web_session, "password_accepted", at)
    web_session.record.user = user
    if event == "mfa_set_up" and remembered:
        event = "device_remembered"
    return fire(web_session, event, at)
