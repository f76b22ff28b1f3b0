"""The request guard: before every browser request, the session's state alone decides
which pages answer (`ENDPOINT_STATES`); any other page redirects to the state's own
step (`STATE_HOME`). It also ends a pending sign-in past its lifetime, and a session
signed in with the password alone once the administrator requires a second factor.
After each step, `landing_url` says where the browser goes."""

from __future__ import annotations

from flask import flash, redirect, request, session, url_for

from ..core import audit, messages
from ..core.clock import now
from ..core.config import setting
from ..directory import settings
from ..signin import lifetimes, policy, state
from ..signin.destinations import is_absolute, safe_destination
from ..signin.sessions import ServerSession
from ..signin.state import ANONYMOUS, AUTHENTICATED, RECOVERY_CODES, TOTP_SETUP, TOTP_VERIFY
from .sessionless import is_sessionless

# Which states each endpoint answers in; any endpoint not named answers only when
# authenticated. Requests without a session (`sessionless`: the API, the health check,
# the gateway, the metrics, static files) are not guarded.
ENDPOINT_STATES = {
    # Signed in: a protected app sent the browser back for a factor, or it is done.
    "auth.login": {ANONYMOUS, AUTHENTICATED},
    "auth.login_passkey": {ANONYMOUS},
    "mfa.setup": {TOTP_SETUP},
    "mfa.setup_later": {TOTP_SETUP},
    "mfa.setup_passkey": {TOTP_SETUP},
    "mfa.security_key": {TOTP_VERIFY},
    "mfa.verify": {TOTP_VERIFY},
    "mfa.recovery": {TOTP_VERIFY},
    "mfa.recovery_codes": {RECOVERY_CODES, AUTHENTICATED},
    "mfa.recovery_codes_download": {RECOVERY_CODES, AUTHENTICATED},
    "auth.logout": set(state.STATES),
    # OpenID Connect: /authorize answers in every state, since `prompt=none` must never
    # get a page (`login_required` instead); otherwise it sends a browser that has not
    # finished signing in to its step. The logout of an application asks or ends
    # whatever the session is.
    "oidc.authorize": set(state.STATES),
    "oidc.end_session": set(state.STATES),
    "i18n.choose": set(state.STATES),  # the language picker: any page may offer it
}
# Where a browser is sent when it asks for a page its state does not allow.
STATE_HOME = {
    ANONYMOUS: "auth.login",
    TOTP_SETUP: "mfa.setup",
    TOTP_VERIFY: "mfa.verify",
    RECOVERY_CODES: "mfa.recovery_codes",
    AUTHENTICATED: "auth.home",
}


def allowed(current: str, endpoint: str | None) -> bool:
    return current in ENDPOINT_STATES.get(endpoint, {AUTHENTICATED})


def needs_second_factor(web_session: ServerSession) -> bool:
    """A session signed in with the password alone, now that the policy (`policy`)
    asks this user for a code, or for a set-up whose grace is over (a user outside the
    scope, or within their grace, stays).

    Checked on every request rather than when a setting changes, so that a sign-in
    racing with the change cannot slip through."""
    if web_session.state != AUTHENTICATED or web_session.record.second_factor_at:
        return False
    if settings.mfa_method() == settings.DISABLED:  # most requests of such a site stop here
        return False
    return not policy.requirement_kept(web_session.user, now()).password_alone


def guard():
    """Before every request: expire a stale pending login, then send the browser to
    the page its state allows if it asked for another."""
    # Every page passes here: the request and the session are looked up once, not
    # through their proxies at each use.
    asked = request._get_current_object()
    if asked.endpoint is None or is_sessionless(asked.path):
        return None
    web_session = session._get_current_object()
    record = web_session.record
    if record is not None:  # an anonymous session has nothing to expire or end
        at = now()
        client = web_session.client
        if lifetimes.pending_expired(record, at):
            audit.record(
                "pending_expired",
                "ended",
                user=web_session.user,
                detail=web_session.state,
                client=client,
            )
            state.fire(web_session, "expired", at)
            flash(messages.text("expired"), "error")
        elif needs_second_factor(web_session):
            audit.record("session_ended", "mfa_required", user=web_session.user, client=client)
            state.fire(web_session, "mfa_required", at)
            flash(messages.text("mfa_required"), "error")
    current = web_session.state
    if allowed(current, asked.endpoint):
        return None
    target = url_for(STATE_HOME[current])
    if current == ANONYMOUS and asked.method == "GET" and asked.path != "/":
        target = url_for(STATE_HOME[current], next=asked.full_path.rstrip("?"))
    return redirect(target)


def landing_url(web_session: ServerSession) -> str:
    """Where the browser goes after a step: the next step, or the page it first asked
    for (kept server-side since the password step), or home."""
    record = web_session.record
    if record.state != AUTHENTICATED:
        return url_for(STATE_HOME[record.state])
    target = destination_url(record.next_url)
    if record.next_url is not None:
        record.next_url = None
        web_session.changed()
    return target


def destination_url(target: str | None) -> str:
    """The URL to send the browser to for a kept `next` or `rd`: a protected app's URL
    as it is, a path of this app below its mount point, or home."""
    checked = safe_destination(target, setting("SESSION_COOKIE_DOMAIN"))
    if checked is None:
        return url_for("auth.home")
    # `next` is a path inside the app (the guard takes it from request.full_path): under
    # a path prefix (X-Forwarded-Prefix) it lives below the prefix.
    return checked if is_absolute(checked) else request.script_root + checked
