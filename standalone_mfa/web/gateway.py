"""The reverse proxy's question, "may this request through?" (docs/gateway/index.md):

- `/auth/nginx` for nginx `auth_request`: 200 (with `Remote-User`, `Remote-Groups`,
  `Remote-Email`: the confirmed address, when there is one),
  401 when the browser must sign in (with a `Location` the proxy's `error_page` can
  send it to), 403 when it is refused;
- `/auth/forward` for Caddy `forward_auth` and Traefik `forwardAuth`: the same, but a
  redirect to the portal's sign-in instead of the 401.

A 200 also carries `Cookie`: the browser's cookies less the portal's own
(`gateway.app_cookies`), which the shipped nginx and Traefik configurations hand the app
instead of the browser's, so that no app sees a cookie that works on the portal (SC-67).

On a rule with `"app_passwords": true`, a client that sent Basic credentials, or that
does not accept HTML, is never sent to sign in: a wrong or missing app password is a 401
with `WWW-Authenticate: Basic realm="…"` and no `Location` (both endpoints). The nginx
snippet tells this 401 from "sign in first" by that missing `Location`. A 200 carries
the `Authorization` the app may have (the client's own, never on such a rule), for the
proxies to hand on in place of the client's.

No body to parse, no session made, no cookie set. Headers a proxy sent that do not
describe a request are refused (403), never allowed, and audited once a minute at
most (SC-34, SC-65).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote, urlsplit

from flask import Blueprint, Response, current_app, request
from werkzeug.http import parse_accept_header

from ..core import hostnames, metrics
from ..core.clock import now
from ..core.config import ConfigurationError, setting
from ..gateway import app_cookies, check, origin, rules
from .cookies import CookiePolicy, single_cookie
from .session_cookie import client

bp = Blueprint("gateway", __name__, url_prefix="/auth")
logger = logging.getLogger("standalone_mfa")
ACCESS_KEY = "standalone_mfa.access_control"
WARNING_INTERVAL = 60.0  # seconds between two log lines about a misconfiguration
_last_warning = [float("-inf")]


def init_app(app) -> None:
    """Parse the rules once, at start; a broken rule stops the app here (SC-34)."""
    try:
        app.extensions[ACCESS_KEY] = rules.parse(setting("ACCESS_CONTROL", app))
    except rules.RulesError as exc:
        raise ConfigurationError(str(exc)) from None
    portal = setting("GATEWAY_PORTAL_URL", app)
    if portal:
        checked = origin.portal_url(portal)
        if checked is None:
            raise ConfigurationError(
                "GATEWAY_PORTAL_URL must be the portal's public http(s) URL, such as "
                "https://auth.example.com (no query, no fragment)."
            )
        app.config["GATEWAY_PORTAL_URL"] = checked
        _check_portal_under_cookie_domain(checked, setting("SESSION_COOKIE_DOMAIN", app))
    elif setting("ACCESS_CONTROL", app) is not None:
        raise ConfigurationError(
            "ACCESS_CONTROL is set but GATEWAY_PORTAL_URL is not: set it to the portal's "
            "public URL (such as https://auth.example.com), where browsers are sent to sign in."
        )
    app.register_blueprint(bp)


def _check_portal_under_cookie_domain(portal: str, domain: str | None) -> None:
    """The session cookie reaches `SESSION_COOKIE_DOMAIN` and the names under it: a
    portal elsewhere would set a cookie that no protected app ever receives."""
    host = urlsplit(portal).hostname or ""
    if domain and not hostnames.is_under(host, domain):
        raise ConfigurationError(
            f"GATEWAY_PORTAL_URL's host ({host}) must be SESSION_COOKIE_DOMAIN ({domain}) "
            f"or a name under it, such as auth.{domain}: the session cookie reaches no "
            "other host."
        )


def access_control() -> rules.AccessControl:
    return current_app.extensions[ACCESS_KEY]


@bp.route("/nginx", methods=["GET", "HEAD"])
def nginx():
    """nginx `auth_request`: 200, 401 (sign in first) or 403."""
    return _answer(origin.from_nginx, redirect_to_portal=False)


@bp.route("/forward", methods=["GET", "HEAD"])
def forward():
    """Caddy `forward_auth` and Traefik `forwardAuth`: 200, a redirect to sign in, or 403."""
    return _answer(origin.from_forwarded, redirect_to_portal=True)


def _answer(read, *, redirect_to_portal: bool) -> Response:
    try:
        original = read(request.headers)
    except origin.BadOrigin as exc:
        # 403, never 400: nginx's auth_request knows only 2xx, 401 and 403 (anything
        # else is a 500 for the browser), and a refusal is what this is.
        metrics.gateway_check(check.REFUSE)
        if check.audit_malformed(str(exc), client()):
            logger.warning(
                "gateway check refused: %s (a client's request, or the proxy's configuration)", exc
            )
        return _empty(403)
    name = session_cookie_name(original.scheme)
    token = single_cookie(name)  # a name sent twice is nobody (SC-68)
    if token is None and name != setting("SESSION_COOKIE_NAME"):
        _warn_if_unprefixed(original)
    at = now()
    decision = check.decide(access_control(), original, token, at)
    if decision.outcome == check.SIGN_IN and decision.rule and decision.rule.app_passwords:
        decision = check.with_app_password(
            access_control(),
            original,
            decision,
            basic_credentials(),
            browser=is_browser(),
            client=client(),
            at=at,
        )
    metrics.gateway_check(decision.outcome)  # counted, never audited one by one
    if decision.outcome == check.ALLOW:
        response = _empty(200)
        if decision.identity is not None:
            response.headers["Remote-User"] = decision.identity.username
            response.headers["Remote-Groups"] = ",".join(decision.identity.groups)
            # Confirmed only: an address waiting for its link is the user's word alone.
            # None without one (the proxies' configurations drop a client's own).
            if decision.identity.email:
                response.headers["Remote-Email"] = decision.identity.email
        kept = app_cookies.for_the_app(
            request.headers.get("Cookie"), setting("SESSION_COOKIE_NAME")
        )
        if kept:
            response.headers["Cookie"] = kept
        passed_on = authorization_for_the_app(decision)
        if passed_on:
            response.headers["Authorization"] = passed_on
        return response
    if decision.outcome == check.REFUSE:
        check.audit_denial(decision, original, client())
        return _empty(403)
    if decision.outcome == check.CHALLENGE:
        response = _empty(401)
        response.headers["WWW-Authenticate"] = basic_challenge()
        return response
    sign_in = sign_in_url(original.url)
    if not redirect_to_portal:
        response = _empty(401)
        response.headers["Location"] = sign_in
        return response
    response = _empty(302 if original.method in ("GET", "HEAD") else 303)
    response.headers["Location"] = sign_in
    return response


def basic_credentials() -> check.BasicCredentials | None:
    """The original request's `Authorization: Basic` credentials (the proxies pass the
    client's headers to the check), or None."""
    authorization = request.authorization
    if authorization is None or authorization.type != "basic":
        return None
    return check.BasicCredentials(authorization.username or "", authorization.password or "")


# What a browser asks for when it follows a link; a calendar or a script asks for XML,
# JSON or anything (*/*), and cannot use a sign-in page.
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def is_browser() -> bool:
    """A client that can be sent to the sign-in page: it named HTML in `Accept` (a
    wildcard does not count) and sent no `Authorization` of any kind."""
    if "Authorization" in request.headers:
        return False
    accepted = parse_accept_header(request.headers.get("Accept"))
    return any(value.lower() in HTML_TYPES and quality > 0 for value, quality in accepted)


def authorization_for_the_app(decision: check.Decision) -> str | None:
    """The `Authorization` the proxy may hand the app in place of the client's (nginx
    `auth_request_set`, Traefik `authResponseHeaders`): the client's own, for an app
    that checks its own credentials behind a rule that takes no app passwords; never on
    a rule that takes them, where it may hold one (the app gets `Remote-User`)."""
    if decision.rule is not None and decision.rule.app_passwords:
        return None
    return request.headers.get("Authorization")


def basic_challenge() -> str:
    """`WWW-Authenticate` for a client that must send an app password: the realm is
    the issuer's name (what the client shows when it asks for the password)."""
    realm = "".join(c for c in setting("MFA_ISSUER") if c not in '"\\' and c >= " ")
    return f'Basic realm="{realm or "Standalone MFA"}", charset="UTF-8"'


def sign_in_url(original_url: str) -> str:
    """The portal's sign-in page, told to come back to `original_url`."""
    portal = setting("GATEWAY_PORTAL_URL") or request.host_url.rstrip("/")
    return f"{portal}/login?rd={quote(original_url, safe='')}"


def session_cookie_name(scheme: str) -> str:
    """The name the session cookie has on a request made over `scheme` (the original
    request's, not this check's): the portal's own naming rule (`cookies`), with the
    prefix over HTTPS (`__Secure-` when shared with subdomains)."""
    secure = scheme == "https" or setting("SESSION_COOKIE_SECURE")
    policy = CookiePolicy(
        secure=secure, path="/", domain=setting("SESSION_COOKIE_DOMAIN"), samesite="Lax"
    )
    return policy.name(setting("SESSION_COOKIE_NAME"))


def _empty(status: int) -> Response:
    response = Response(b"", status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _warn_if_unprefixed(original) -> None:
    """An HTTPS app whose browser holds only the plain cookie: the portal set it over
    what it took for HTTP (behind a TLS proxy without PROXY_FIX_X_PROTO). That cookie
    is not believed over HTTPS (a sibling site could have planted it), so the browser
    would go round between the app and the portal: say why in the log."""
    if setting("SESSION_COOKIE_NAME") in request.cookies:
        _log_once_a_minute(
            f"gateway: the browser's session cookie for https://{original.host} has no __Secure- "
            "prefix: the portal believes it is served over plain HTTP (set PROXY_FIX_X_PROTO "
            "behind a TLS proxy, or SESSION_COOKIE_SECURE)"
        )


def _log_once_a_minute(message: str) -> None:
    """A misconfigured proxy or portal: say so in the log, once a minute at most (every
    request of the protected apps would otherwise add a line)."""
    moment = time.monotonic()
    if moment - _last_warning[0] >= WARNING_INTERVAL:
        _last_warning[0] = moment
        logger.warning("%s", message)
