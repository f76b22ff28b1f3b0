"""The OpenID provider's endpoints (docs/oidc/index.md). Two blueprints:

- `oidc`: `/authorize` (the portal's own sign-in, then the client's policy and
  subjects, then a code to the registered redirect URI) and `/end-session`
  (RP-initiated logout): pages of a browser's session;
- `oidc_api`: discovery, JWKS, token, userinfo and revocation: no session, no cookie,
  no CSRF token (`sessionless`), CORS open (they read no cookie).

With neither OIDC_ISSUER nor GATEWAY_PORTAL_URL set, every one of them answers 404
(an issuer is the identity clients check the ID token against: it is not guessed
from a request's Host header)."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from joserfc import jwt
from joserfc.errors import JoseError

from ..core import audit, messages
from ..core.clock import now
from ..core.config import ConfigurationError, setting
from ..directory.groups import groups_of
from ..factors import throttle, webauthn
from ..gateway import check, origin, rules
from ..oidc import authorize as rules_of_authorize
from ..oidc import claims, clients, keys, server, tokens
from ..signin import methods, steps
from ..signin.state import ANONYMOUS, AUTHENTICATED
from .errors import render_error
from .forms import ButtonForm
from .guard import landing_url
from .session_cookie import client as request_client

logger = logging.getLogger("standalone_mfa")
bp = Blueprint("oidc", __name__)
api = Blueprint("oidc_api", __name__)
SERVER_KEY = "standalone_mfa.oidc_server"


def init_app(app) -> None:
    """Check the issuer; build Authlib's server; say at start when OpenID is off."""
    configured = setting("OIDC_ISSUER", app)
    if configured is not None:
        checked = origin.portal_url(configured)
        if checked is None:
            raise ConfigurationError(
                "OIDC_ISSUER must be the portal's public http(s) URL, such as "
                "https://auth.example.com (no query, no fragment)."
            )
        app.config["OIDC_ISSUER"] = checked
    elif setting("GATEWAY_PORTAL_URL", app) is None and not app.testing:
        logger.info(
            "OpenID Connect is off: set OIDC_ISSUER (or GATEWAY_PORTAL_URL) to the portal's "
            "public URL to serve it"
        )
    app.extensions[SERVER_KEY] = server.make_server(app)
    app.register_blueprint(bp)
    app.register_blueprint(api)


def _server():
    return current_app.extensions[SERVER_KEY]


def _issuer() -> str:
    value = server.issuer()
    if value is None:
        abort(404)
    return value


def _url(endpoint: str) -> str:
    """An endpoint's public URL: below the issuer, which already holds any path prefix
    the portal is served under."""
    return _issuer() + url_for(endpoint)[len(request.script_root) :]


@api.after_request
def _open_to_scripts(response):
    """CORS for the endpoints a single-page app calls: none reads a cookie. (Token
    and userinfo take the gateway's lean path, which runs no hook: they call it.)"""
    response.headers["Access-Control-Allow-Origin"] = "*"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


# --- Discovery and keys -----------------------------------------------------------------------


@api.route("/.well-known/openid-configuration", methods=["GET", "OPTIONS"])
def discovery():
    """The provider's metadata (OpenID Connect Discovery 1.0)."""
    issuer = _issuer()
    response = jsonify(
        {
            "issuer": issuer,
            "authorization_endpoint": _url("oidc.authorize"),
            "token_endpoint": _url("oidc_api.token"),
            "userinfo_endpoint": _url("oidc_api.userinfo"),
            "jwks_uri": _url("oidc_api.jwks"),
            "revocation_endpoint": _url("oidc_api.revoke"),
            "end_session_endpoint": _url("oidc.end_session"),
            "scopes_supported": list(claims.SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [keys.SIGNING_ALG],
            "token_endpoint_auth_methods_supported": server.SECRET_METHODS,
            "revocation_endpoint_auth_methods_supported": server.SECRET_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": list(claims.CLAIMS),
            "acr_values_supported": list(claims.ACR_VALUES),
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "authorization_response_iss_parameter_supported": True,
            "userinfo_signing_alg_values_supported": [],
        }
    )
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@api.route("/jwks.json", methods=["GET", "OPTIONS"])
def jwks():
    """The public keys that sign ID tokens (active, and retired ones still needed)."""
    _issuer()
    response = jsonify(keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# --- Token, userinfo, revocation ----------------------------------------------------------


@api.route("/token", methods=["POST", "OPTIONS"])
def token():
    """Codes and refresh tokens exchanged for tokens (client authentication:
    `client_secret_basic`, `client_secret_post`, or `none` for a public client)."""
    _issuer()
    if request.method == "OPTIONS":
        return "", 204
    return _open_to_scripts(_authenticated_call(_server().create_token_response))


def _authenticated_call(call):
    """A call that authenticates the client: refused while the address waits after
    failures (SC-60, the sign-in's own address counter), and a failure counted."""
    who = request_client()
    wait = throttle.address_wait(who.ip) if who.ip else 0
    if wait:
        response = jsonify(
            error="invalid_client", error_description="Too many failed attempts: wait."
        )
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        response.headers["Cache-Control"] = "no-store"
        return response
    response = call()
    if response.status_code in (400, 401) and b'"invalid_client"' in response.get_data():
        if who.ip:
            throttle.begin_address_attempt(who.ip)
        _client_auth_failed()
    return response


def _client_auth_failed() -> None:
    """One audit row a minute per address at most: a scanner must not grow the log."""
    who = request_client()
    if audit.cap("oidc_client_auth").due(who.ip, now().timestamp()):
        audit.record("oidc_client_auth", "failed", detail=request.path, client=who)


@api.route("/userinfo", methods=["GET", "POST", "OPTIONS"])
def userinfo():
    """The claims of the access token's user: the token in `Authorization: Bearer`, or
    (POST) in the form body's `access_token` (RFC 6750 §2.2)."""
    _issuer()
    if request.method == "OPTIONS":
        return "", 204
    access_token = _bearer_token()
    found = tokens.userinfo(access_token) if access_token else None
    if found is None:
        error = "invalid_token" if access_token else "invalid_request"
        response = jsonify(error=error)
        response.status_code = 401 if access_token or error == "invalid_request" else 400
        response.headers["WWW-Authenticate"] = (
            f'Bearer error="{error}"' if access_token else "Bearer"
        )
        response.headers["Cache-Control"] = "no-store"
        return _open_to_scripts(response)
    response = jsonify(found)
    response.headers["Cache-Control"] = "no-store"
    return _open_to_scripts(response)


def _bearer_token() -> str | None:
    """The token from the header, or from a POST form body; both at once is refused."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    from_header = value.strip() if scheme.lower() == "bearer" else None
    from_body = None
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        from_body = request.form.get("access_token")
    if from_header and from_body:
        return None
    return from_header or from_body


@api.route("/revoke", methods=["POST", "OPTIONS"])
def revoke():
    """RFC 7009: a client revokes one of its tokens (a refresh token: its whole family)."""
    _issuer()
    if request.method == "OPTIONS":
        return "", 204
    return _authenticated_call(lambda: _server().create_endpoint_response("revocation"))


# --- Authorization -------------------------------------------------------------------------


def _error_redirect(redirect_uri: str, error: str, state: str | None, description=None):
    """An error for the client, at its (registered) redirect URI, with `state` and
    `iss` (RFC 9207)."""
    params = [("error", error)]
    if description:
        params.append(("error_description", description))
    if state:
        params.append(("state", state))
    params.append(("iss", _issuer()))
    return redirect(add_params_to_uri(redirect_uri, params))


def _this_request(drop=()) -> str:
    """This authorization request as a path to come back to after signing in, less the
    parameters that signing in fulfils (`prompt=login`, `max_age`)."""
    kept = [(k, v) for k, v in request.args.items(multi=True) if k not in drop]
    query = urlencode(kept)
    return url_for("oidc.authorize") + ("?" + query if query else "")


@bp.route("/authorize")
def authorize():
    """The authorization endpoint: sign in (as the portal always does), then a code."""
    _issuer()
    row = clients.by_client_id(request.args.get("client_id"))
    redirect_uri = request.args.get("redirect_uri")
    if row is None or not clients.has_redirect_uri(row, redirect_uri):
        # Never a redirect to an address nobody registered (SC-57).
        return render_error(400, messages.text("oidc_bad_request"))
    state = request.args.get("state")
    oauth = _server().create_oauth2_request(None)
    try:
        grant = _server().get_authorization_grant(oauth)
        grant.validate_no_multiple_request_parameter(oauth)
        grant.validate_authorization_request()
        asked = rules_of_authorize.parse(request.args)
    except OAuth2Error as error:
        return _error_redirect(redirect_uri, error.error, state, error.description)
    if session.state != AUTHENTICATED:
        if asked.prompt_none:
            return _error_redirect(redirect_uri, "login_required", state)
        if session.state == ANONYMOUS:
            return _to_sign_in()
        return redirect(landing_url(session))  # the step under way (it kept `next`)
    record = session.record
    auth_time = record.state_since
    if asked.needs_new_sign_in(auth_time, now()):
        if asked.prompt_none:
            return _error_redirect(redirect_uri, "login_required", state)
        # A new sign-in, all of it: the password, then the factors the site asks for.
        steps.sign_out(session)
        return _to_sign_in()
    second_factor = record.second_factor_at is not None
    proven = methods.parse(record.signin_methods)
    resistant = methods.phishing_resistant(proven)
    if not check.satisfies(row.policy, second_factor, resistant):
        if asked.prompt_none:
            return _error_redirect(redirect_uri, "interaction_required", state)
        return _step_up_page(row)
    user = session.user
    if not clients.may_use(row, user.username, groups_of(user)):
        audit.record("oidc_signin", "denied", user=user, detail=row.name, client=session.client)
        return _error_redirect(redirect_uri, "access_denied", state)
    amr, acr = claims.sign_in_facts(record.signin_methods, second_factor)
    grantee = server.Grantee(user, auth_time, amr, acr, record.token_hash)
    try:
        _, _, headers = grant.create_authorization_response(redirect_uri, grantee)
    except OAuth2Error as error:
        return _error_redirect(redirect_uri, error.error, state, error.description)
    audit.record("oidc_signin", "ok", user=user, detail=row.name, client=session.client)
    location = add_params_to_uri(dict(headers)["Location"], [("iss", _issuer())])
    response = redirect(location)
    response.headers["Cache-Control"] = "no-store"
    return response


def _to_sign_in():
    """The portal's sign-in, back to this request once every step is done."""
    return redirect(url_for("auth.login", next=_this_request(rules_of_authorize.FULFILLED)))


def _step_up_page(row):
    """The client's policy asks more than this session proved: the second factor, or a
    passkey or security key. After the person's click (a POST with its CSRF token: a
    link from another site must not move the session into a step that ends it if
    abandoned), the same steps the gateway's rules use, then back here."""
    if row.policy == rules.PHISHING_RESISTANT and not webauthn.has_keys(session.user):
        return render_template("auth/phishing_resistant.html", app_host=row.name, form=None)
    template = (
        "auth/phishing_resistant.html"
        if row.policy == rules.PHISHING_RESISTANT
        else "auth/second_factor.html"
    )
    return render_template(
        template,
        app_host=row.name,
        form=ButtonForm(),
        form_action=url_for("oidc.step_up", next=_this_request()),
    )


@bp.route("/authorize/step-up", methods=["POST"])
def step_up():
    """The person's click on the step-up page: through the code (or key) step, then
    back to the authorization request."""
    form = ButtonForm()
    destination = request.args.get("next") or ""
    if not form.validate_on_submit() or not destination.startswith(url_for("oidc.authorize")):
        return redirect(url_for("auth.home"))
    row = clients.by_client_id(rules_of_authorize.client_id_of(destination))
    if row is not None and row.policy == rules.PHISHING_RESISTANT:
        steps.require_phishing_resistance(session, destination)
    else:
        steps.require_second_factor(session, destination)
    return redirect(landing_url(session))


# --- RP-initiated logout ---------------------------------------------------------------------


@bp.route("/end-session", methods=["GET", "POST"])
def end_session():
    """An application signs the person out of the portal (OpenID Connect RP-Initiated
    Logout). With a valid `id_token_hint` (ours, for a registered client): the session
    ends and the browser goes to the client's registered `post_logout_redirect_uri`.
    Otherwise a page asks first (POST with CSRF). An unregistered target is never
    followed (SC-64)."""
    _issuer()
    values = request.values
    hinted = _hinted_client(values.get("id_token_hint"))
    target = values.get("post_logout_redirect_uri")
    row = hinted or clients.by_client_id(values.get("client_id"))
    if target and (row is None or target not in clients.post_logout_redirect_uris(row)):
        target = None
    state = values.get("state")
    if request.method == "POST":
        form = ButtonForm()
        if not form.validate_on_submit():
            return redirect(url_for("oidc.end_session"))
        return _signed_out(target, state, row)
    if hinted is not None:
        return _signed_out(target, state, row)
    if session.state == ANONYMOUS:
        return _after_logout(target, state)
    return render_template(
        "oidc/end_session.html",
        form=ButtonForm(),
        app_name=row.name if row else None,
        post_logout_redirect_uri=target,
        client_id=row.client_id if row else None,
        state=state,
    )


def _hinted_client(hint: str | None):
    """The registered client an ID token we signed names as its audience, or None
    (a forged, foreign or malformed hint). An expired one still names the client: the
    person may come back long after signing in."""
    if not hint or len(hint) > 8192:
        return None
    try:
        token = jwt.decode(hint, keys.verification_keys(), algorithms=list(keys.ALGORITHMS))
    except (JoseError, ValueError):
        return None
    if token.claims.get("iss") != server.issuer():
        return None
    audience = token.claims.get("aud")
    audience = audience[0] if isinstance(audience, list) and len(audience) == 1 else audience
    return clients.by_client_id(audience) if isinstance(audience, str) else None


def _signed_out(target, state, row):
    if session.state != ANONYMOUS:
        token_hash = session.record.token_hash if session.has_row else None
        audit.record(
            "oidc_logout",
            "ok",
            user=session.user,
            detail=row.name if row else None,
            client=session.client,
        )
        steps.sign_out(session)
        if token_hash:
            tokens.revoke_session(token_hash)
    return _after_logout(target, state)


def _after_logout(target, state):
    if target:
        return redirect(add_params_to_uri(target, [("state", state)] if state else []))
    return redirect(url_for("auth.login"))
