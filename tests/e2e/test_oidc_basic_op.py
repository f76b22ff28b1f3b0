"""A pytest port of the OpenID Foundation's Basic OP test plan (OIDCCBasicTestPlan;
the suite itself needs MongoDB and Maven, neither reachable here: docs/oidc/interop.md)
and of its RP-initiated logout checks, against the real portal under gunicorn with
raw HTTP requests. The checklist's SC-57 … SC-64 carry their id in the test's name.

Each test signs in new people (a person's code step is used once); one portal and a
few clients serve the module."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import RSAKey
from support.oidc_live import (
    SCOPE,
    HopError,
    OidcPerson,
    RegisteredClient,
    authorization_url,
    browser_hop,
    fresh_browser,
    id_token_claims,
    jwks,
    oidc_portal,
    pkce_pair,
    token_post,
)
from support.servers import HTTP_TIMEOUT

from standalone_mfa.core.models import UserGroup
from standalone_mfa.directory.users import find_user

pytestmark = pytest.mark.server

CALLBACK = "http://127.0.0.1:9/basic-op/callback"
LOGGED_OUT = "http://127.0.0.1:9/basic-op/logged-out"


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    with oidc_portal(tmp_path_factory.mktemp("oidc-basic-op")) as portal:
        yield portal


@pytest.fixture(scope="module")
def rp(portal) -> RegisteredClient:
    """A confidential client, as most apps register."""
    return portal.register("Basic OP", CALLBACK, post_logout_redirect_uris=[LOGGED_OUT])


@pytest.fixture(scope="module")
def offline_rp(portal) -> RegisteredClient:
    """A client allowed refresh tokens (offline_access)."""
    return portal.register(
        "Basic OP offline", CALLBACK.replace("basic-op", "offline"), offline=True
    )


@pytest.fixture(scope="module")
def public_rp(portal) -> RegisteredClient:
    """A public client (no secret: PKCE alone binds its code)."""
    return portal.register("Basic OP public", CALLBACK.replace("basic-op", "public"), public=True)


@pytest.fixture
def person(portal) -> OidcPerson:
    return portal.person("op", groups=("users",))


# ------------------------------------------------------------------ the steps


@dataclass
class Flow:
    """One pass through /authorize: the browser (its cookies: the portal session),
    the request made, the parameters the redirect carried, the pages filled."""

    http: requests.Session
    request: object
    answer: dict
    seen: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        assert "code" in self.answer, self.answer
        return self.answer["code"]


def authorize(portal, client, person, http=None, **params) -> Flow:
    """The client's authorization request (code, S256 PKCE, state, nonce; `params`
    added or overriding, None leaving one out), the browser through the portal."""
    http = http or fresh_browser()
    request = authorization_url(portal, client, **params)
    seen: list[str] = []
    back = browser_hop(http, request.url, person, client.redirect_uri, seen)
    answer = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    return Flow(http, request, answer, seen)


def exchange(portal, client, flow: Flow, auth="basic", **extra) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": flow.code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": flow.request.verifier,
        **extra,
    }
    return token_post(portal, client, {k: v for k, v in data.items() if v is not None}, auth)


def tokens_of(portal, client, flow: Flow, auth="basic") -> dict:
    response = exchange(portal, client, flow, auth)
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers.get("Cache-Control", "")
    return response.json()


def signed_in(portal, client, person) -> tuple[Flow, dict, dict]:
    """A code flow to the end: (the flow, the token response, the ID token's claims)."""
    flow = authorize(portal, client, person)
    tokens = tokens_of(portal, client, flow)
    _, claims = id_token_claims(portal, tokens["id_token"])
    return flow, tokens, claims


def userinfo(portal, access_token, how="get") -> requests.Response:
    endpoint = portal.discovery()["userinfo_endpoint"]
    bearer = {"Authorization": f"Bearer {access_token}"}
    if how == "get":
        return requests.get(endpoint, headers=bearer, timeout=HTTP_TIMEOUT)
    if how == "post-header":
        return requests.post(endpoint, headers=bearer, timeout=HTTP_TIMEOUT)
    return requests.post(endpoint, data={"access_token": access_token}, timeout=HTTP_TIMEOUT)


def error_of(flow_or_answer) -> str | None:
    answer = flow_or_answer.answer if isinstance(flow_or_answer, Flow) else flow_or_answer
    return answer.get("error")


def refused_at_the_portal(portal, client, person, **params) -> str:
    """An authorization request the portal must refuse: either an error redirect to
    the client (its `error`) or an error page at the portal ("page"); never a code."""
    try:
        flow = authorize(portal, client, person, **params)
    except HopError as error:
        assert 400 <= error.response.status_code < 500, error
        assert urlsplit(error.response.url).netloc == urlsplit(portal.url).netloc
        return "page"
    assert "code" not in flow.answer, flow.answer
    assert flow.answer.get("error"), flow.answer
    return flow.answer["error"]


# ------------------------------------------------------------------ discovery and keys


def test_discovery_names_the_issuer_endpoints_and_what_the_portal_supports(portal):
    meta = portal.discovery()
    assert meta["issuer"] == portal.url
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "revocation_endpoint",
        "end_session_endpoint",
    ):
        assert meta[name].startswith(portal.url + "/"), name
    assert "code" in meta["response_types_supported"]
    assert "openid" in meta["scopes_supported"]
    assert meta["subject_types_supported"] == ["public"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert "none" not in meta["id_token_signing_alg_values_supported"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert meta.get("request_parameter_supported", False) is False


def test_sc62_jwks_publishes_public_keys_only_each_with_a_kid(portal):
    keys = requests.get(portal.discovery()["jwks_uri"], timeout=HTTP_TIMEOUT).json()["keys"]
    assert keys
    for key in keys:
        assert key["kid"] and key["kty"] in ("RSA", "EC")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


# ------------------------------------------------------------------ the code flow


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_sc60_code_flow_with_client_secret_basic_and_post(portal, rp, person, auth):
    flow = authorize(portal, rp, person)
    assert flow.answer["state"] == flow.request.state
    assert flow.answer.get("iss") in (None, portal.url)  # RFC 9207, when sent
    assert flow.seen == ["/login", "/mfa/verify"]
    tokens = tokens_of(portal, rp, flow, auth)
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["expires_in"] > 0
    assert "refresh_token" not in tokens  # offline_access neither asked nor allowed
    header, claims = id_token_claims(portal, tokens["id_token"])
    assert header["alg"] == "RS256" or header["alg"] == "ES256"


def test_sc62_id_token_claims_signature_kid_and_never_alg_none(portal, rp, person):
    before = int(time.time())
    flow, tokens, claims = signed_in(portal, rp, person)
    header = json.loads(base64.urlsafe_b64decode(tokens["id_token"].split(".")[0] + "=="))
    assert header["alg"] != "none" and header["alg"] in ("RS256", "ES256")
    assert header["kid"] in {key["kid"] for key in jwks(portal).keys}
    assert claims["iss"] == portal.url
    assert claims["aud"] in (rp.client_id, [rp.client_id])
    assert claims["nonce"] == flow.request.nonce
    assert before - 5 <= claims["iat"] <= time.time() + 5
    assert claims["exp"] > claims["iat"]
    assert before - 60 <= claims["auth_time"] <= claims["iat"]
    assert claims["sub"] and claims["sub"] != person.username
    assert {"pwd", "otp", "mfa"} <= set(claims["amr"])
    assert claims.get("acr")
    # Tampered: the signature no longer holds (joserfc refuses it).
    head, _, signature = tokens["id_token"].split(".")
    forged_body = b64url_json({**claims, "sub": "someone-else"})
    with pytest.raises(BadSignatureError):
        id_token_claims(portal, f"{head}.{forged_body}.{signature}")


def test_response_type_missing_is_refused(portal, rp, person):
    outcome = refused_at_the_portal(portal, rp, person, response_type=None)
    assert outcome in ("page", "invalid_request", "unsupported_response_type")


def test_response_type_token_is_refused(portal, rp, person):
    outcome = refused_at_the_portal(portal, rp, person, response_type="token")
    assert outcome in ("page", "unsupported_response_type", "invalid_request")


@pytest.mark.parametrize("how", ["get", "post-header", "post-body"])
def test_userinfo_by_get_post_with_header_and_post_with_body(portal, rp, person, how):
    _, tokens, claims = signed_in(portal, rp, person)
    response = userinfo(portal, tokens["access_token"], how)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    info = response.json()
    assert info["sub"] == claims["sub"]
    assert info["preferred_username"] == person.username
    assert info["groups"] == ["users"]


def test_userinfo_refuses_no_token_and_a_wrong_one(portal):
    endpoint = portal.discovery()["userinfo_endpoint"]
    missing = requests.get(endpoint, timeout=HTTP_TIMEOUT)
    assert missing.status_code == 401
    assert missing.headers.get("WWW-Authenticate", "").startswith("Bearer")
    wrong = userinfo(portal, secrets.token_urlsafe(32))
    assert wrong.status_code == 401


def test_nonce_absent_is_fine_for_the_code_flow_and_leaves_no_nonce_claim(portal, rp, person):
    flow = authorize(portal, rp, person, nonce=None)
    tokens = tokens_of(portal, rp, flow)
    _, claims = id_token_claims(portal, tokens["id_token"])
    assert "nonce" not in claims  # not even "nonce": null (research pitfall 9)


def test_nonce_present_comes_back_in_the_id_token(portal, rp, person):
    flow, _, claims = signed_in(portal, rp, person)
    assert claims["nonce"] == flow.request.nonce


@pytest.mark.parametrize(
    ("scope", "present", "absent"),
    [
        ("openid", {"sub"}, {"email", "preferred_username", "groups"}),
        ("openid profile", {"sub", "preferred_username"}, {"email", "groups"}),
        ("openid email", {"sub", "email", "email_verified"}, {"preferred_username", "groups"}),
        ("openid groups", {"sub", "groups"}, {"email", "preferred_username"}),
        ("openid profile email groups", {"preferred_username", "email", "groups"}, set()),
        ("groups email profile openid", {"preferred_username", "email", "groups"}, set()),
    ],
    ids=["openid", "profile", "email", "groups", "all", "all-reversed"],
)
def test_scopes_decide_the_userinfo_claims_whatever_their_order(
    portal, rp, scope, present, absent
):
    person = portal.person("scope", groups=("users",))
    with portal.app.app_context():
        user = find_user(person.username)
        user.email = f"{person.username}@example.com"
        user.save()
    flow = authorize(portal, rp, person, scope=scope)
    tokens = tokens_of(portal, rp, flow)
    info = userinfo(portal, tokens["access_token"]).json()
    assert present <= info.keys(), info
    assert not absent & info.keys(), info
    if "email" in info:
        assert info["email"] == f"{person.username}@example.com"
        assert info["email_verified"] in (True, False)


def test_a_scope_without_openid_gets_no_id_token(portal, rp, person):
    outcome = None
    try:
        flow = authorize(portal, rp, person, scope="profile")
    except HopError as error:
        outcome = error.response.status_code
    else:
        if "code" in flow.answer:
            assert "id_token" not in tokens_of(portal, rp, flow)
        else:
            outcome = flow.answer["error"]
    assert outcome in (None, 400, "invalid_scope", "invalid_request")


# ------------------------------------------------------------------ prompt, max_age


def test_prompt_login_asks_a_signed_in_person_again(portal, rp, person):
    first = authorize(portal, rp, person)
    _, before = id_token_claims(portal, tokens_of(portal, rp, first)["id_token"])
    time.sleep(1.1)  # auth_time counts seconds
    again = authorize(portal, rp, person, http=first.http, prompt="login")
    assert again.seen, "prompt=login showed no sign-in"
    _, after = id_token_claims(portal, tokens_of(portal, rp, again)["id_token"])
    assert after["sub"] == before["sub"]
    assert after["auth_time"] > before["auth_time"]


def test_sc63_prompt_none_signed_out_is_login_required_without_a_page(portal, rp):
    flow = authorize(portal, rp, None, prompt="none")
    assert flow.seen == []
    assert error_of(flow) == "login_required"
    assert flow.answer["state"] == flow.request.state


def test_sc63_prompt_none_signed_in_gives_the_same_sub_and_auth_time(portal, rp, person):
    first = authorize(portal, rp, person)
    _, before = id_token_claims(portal, tokens_of(portal, rp, first)["id_token"])
    again = authorize(portal, rp, None, http=first.http, prompt="none")
    assert again.seen == []
    _, after = id_token_claims(portal, tokens_of(portal, rp, again)["id_token"])
    assert after["sub"] == before["sub"]
    assert after["auth_time"] == before["auth_time"]


def test_sc63_max_age_1_forces_a_new_sign_in(portal, rp, person):
    first = authorize(portal, rp, person)
    _, before = id_token_claims(portal, tokens_of(portal, rp, first)["id_token"])
    time.sleep(2.1)
    again = authorize(portal, rp, person, http=first.http, max_age="1")
    assert again.seen, "max_age=1 showed no sign-in"
    _, after = id_token_claims(portal, tokens_of(portal, rp, again)["id_token"])
    assert after["sub"] == before["sub"]
    assert after["auth_time"] > before["auth_time"]


def test_sc63_max_age_10000_keeps_the_sign_in(portal, rp, person):
    first = authorize(portal, rp, person)
    _, before = id_token_claims(portal, tokens_of(portal, rp, first)["id_token"])
    again = authorize(portal, rp, None, http=first.http, max_age="10000")
    assert again.seen == []
    _, after = id_token_claims(portal, tokens_of(portal, rp, again)["id_token"])
    assert after["auth_time"] == before["auth_time"]


def test_sc63_max_age_with_prompt_none_too_old_is_login_required(portal, rp, person):
    first = authorize(portal, rp, person)
    time.sleep(2.1)
    again = authorize(portal, rp, None, http=first.http, prompt="none", max_age="1")
    assert again.seen == []
    assert error_of(again) == "login_required"


# ------------------------------------------------------------------ other parameters


def test_unknown_parameters_are_ignored(portal, rp, person):
    flow = authorize(portal, rp, person, extra="foobar", another_one="x")
    tokens_of(portal, rp, flow)


def test_hints_locales_and_acr_values_are_accepted(portal, rp, person):
    first, tokens, _ = signed_in(portal, rp, person)
    again = authorize(
        portal,
        rp,
        None,
        http=first.http,
        id_token_hint=tokens["id_token"],
        login_hint=person.username,
        ui_locales="fr-CA fr en",
        claims_locales="de en",
        acr_values="urn:example:unknown",
        display="page",
    )
    assert again.seen == []
    tokens_of(portal, rp, again)


def test_login_hint_signed_out_still_asks_for_the_sign_in(portal, rp, person):
    flow = authorize(portal, rp, person, login_hint=person.username)
    assert flow.seen
    tokens_of(portal, rp, flow)


def b64url_json(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_a_request_object_is_refused_as_not_supported(portal, rp, person):
    """An unsigned request object (OpenID Core 6.1): the portal reads none, and says so."""
    claims = {"client_id": rp.client_id, "response_type": "code", "scope": "openid"}
    request_object = f"{b64url_json({'alg': 'none'})}.{b64url_json(claims)}."
    flow = authorize(portal, rp, person, request=request_object)
    assert error_of(flow) == "request_not_supported", flow.answer
    assert "code" not in flow.answer


def test_a_request_uri_is_refused_as_not_supported(portal, rp, person):
    flow = authorize(portal, rp, person, request_uri="https://rp.example/request.jwt")
    assert error_of(flow) == "request_uri_not_supported", flow.answer


# ------------------------------------------------------------------ redirect URIs (SC-57)


LOOK_ALIKES = [
    "http://127.0.0.1:9/unregistered",
    CALLBACK + "/",
    CALLBACK + "/extra",
    CALLBACK + "?x=1",
    CALLBACK.replace(":9/", ":10/"),
    CALLBACK.replace("http:", "https:"),
    CALLBACK.replace("127.0.0.1", "localhost"),
    CALLBACK.upper(),
    CALLBACK + "#fragment",
]


@pytest.mark.parametrize("redirect_uri", LOOK_ALIKES)
def test_sc57_unregistered_redirect_uri_is_an_error_page_never_a_redirect(
    portal, rp, redirect_uri
):
    request = authorization_url(portal, rp, redirect_uri=redirect_uri)
    for http in (fresh_browser(), None):
        if http is None:  # and a signed-in browser too
            http = fresh_browser()
            authorize(portal, rp, portal.person("sc57"), http=http)
        response = http.get(request.url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert 400 <= response.status_code < 500, (response.status_code, response.headers)
        assert "Location" not in response.headers


def test_sc57_unknown_client_is_an_error_page_never_a_redirect(portal, rp):
    request = authorization_url(portal, rp, client_id="unknown-client-id-0000")
    response = fresh_browser().get(request.url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert 400 <= response.status_code < 500 and "Location" not in response.headers


def test_sc57_missing_redirect_uri_is_refused(portal, rp, person):
    request = authorization_url(portal, rp, redirect_uri=None)
    response = fresh_browser().get(request.url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    # OpenID requires redirect_uri; a single registered one may be assumed (OAuth 2),
    # never anything else.
    if response.is_redirect:
        assert response.headers["Location"].startswith(portal.url + "/") or response.headers[
            "Location"
        ].startswith("/"), response.headers["Location"]
    else:
        assert 400 <= response.status_code < 500


# ------------------------------------------------------------------ PKCE (SC-58)


def test_sc58_missing_code_challenge_is_refused(portal, rp, person):
    outcome = refused_at_the_portal(
        portal, rp, person, code_challenge=None, code_challenge_method=None
    )
    assert outcome in ("page", "invalid_request")


def test_sc58_plain_code_challenge_is_refused(portal, rp, person):
    outcome = refused_at_the_portal(
        portal, rp, person, code_challenge="a" * 50, code_challenge_method="plain"
    )
    assert outcome in ("page", "invalid_request")


@pytest.mark.parametrize("verifier", ["wrong", "missing"])
def test_sc58_a_wrong_or_missing_verifier_gets_no_tokens(portal, rp, person, verifier):
    flow = authorize(portal, rp, person)
    flow.request.verifier = pkce_pair()[0] if verifier == "wrong" else None
    response = exchange(portal, rp, flow)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("invalid_grant", "invalid_request")


def test_sc58_public_client_with_pkce_and_no_secret(portal, public_rp, person):
    flow = authorize(portal, public_rp, person)
    tokens = tokens_of(portal, public_rp, flow, auth="none")
    _, claims = id_token_claims(portal, tokens["id_token"])
    assert claims["aud"] in (public_rp.client_id, [public_rp.client_id])


def test_sc58_public_client_without_pkce_is_refused(portal, public_rp, person):
    outcome = refused_at_the_portal(
        portal, public_rp, person, code_challenge=None, code_challenge_method=None
    )
    assert outcome in ("page", "invalid_request")


# ------------------------------------------------------------------ codes (SC-59)


def test_sc59_code_reuse_is_refused_and_revokes_the_tokens_it_gave(portal, offline_rp, person):
    flow = authorize(portal, offline_rp, person, scope=SCOPE + " offline_access")
    first = tokens_of(portal, offline_rp, flow)
    assert userinfo(portal, first["access_token"]).status_code == 200
    second = exchange(portal, offline_rp, flow)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert userinfo(portal, first["access_token"]).status_code == 401
    refreshed = token_post(
        portal,
        offline_rp,
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_sc59_a_code_is_bound_to_its_client_and_redirect_uri(portal, rp, offline_rp, person):
    flow = authorize(portal, rp, person)
    stolen = exchange(portal, offline_rp, flow, redirect_uri=rp.redirect_uri)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    other = authorize(portal, rp, portal.person("bound"))
    moved = exchange(portal, rp, other, redirect_uri=rp.redirect_uri + "/other")
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_grant"


def test_sc59_an_unknown_code_is_invalid_grant(portal, rp):
    response = token_post(
        portal,
        rp,
        {
            "grant_type": "authorization_code",
            "code": secrets.token_urlsafe(32),
            "redirect_uri": rp.redirect_uri,
            "code_verifier": pkce_pair()[0],
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


# ------------------------------------------------------------------ client authentication


def test_sc60_a_wrong_secret_or_none_is_invalid_client(portal, rp, person):
    flow = authorize(portal, rp, person)
    wrong = RegisteredClient(rp.name, rp.client_id, secrets.token_urlsafe(32), rp.redirect_uri)
    for auth in ("basic", "post"):
        response = exchange(portal, wrong, flow, auth=auth)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
    # A confidential client's id without its secret, as a public client would send it.
    response = exchange(portal, rp, flow, auth="none")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    # The code was not spent by the failed attempts.
    assert exchange(portal, rp, flow).status_code == 200


# ------------------------------------------------------------------ tokens (SC-61)


def offline_tokens(portal, offline_rp, person) -> dict:
    flow = authorize(portal, offline_rp, person, scope=SCOPE + " offline_access")
    tokens = tokens_of(portal, offline_rp, flow)
    assert tokens.get("refresh_token"), tokens
    return tokens


def refresh(portal, client, refresh_token, auth="basic") -> requests.Response:
    return token_post(
        portal, client, {"grant_type": "refresh_token", "refresh_token": refresh_token}, auth
    )


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_sc61_refresh_token_rotates_with_basic_and_post(portal, offline_rp, person, auth):
    tokens = offline_tokens(portal, offline_rp, person)
    renewed = refresh(portal, offline_rp, tokens["refresh_token"], auth)
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert fresh["access_token"] != tokens["access_token"]
    assert userinfo(portal, fresh["access_token"]).status_code == 200
    if "id_token" in fresh:
        _, claims = id_token_claims(portal, fresh["id_token"])
        assert claims["iss"] == portal.url


def test_sc61_no_refresh_token_without_offline_access(portal, offline_rp, person):
    flow = authorize(portal, offline_rp, person)
    assert "refresh_token" not in tokens_of(portal, offline_rp, flow)


def test_sc61_a_client_not_offline_gets_no_refresh_token(portal, rp, person):
    flow = authorize(portal, rp, person, scope=SCOPE + " offline_access")
    assert "refresh_token" not in tokens_of(portal, rp, flow)


def test_sc61_a_reused_refresh_token_revokes_its_family(portal, offline_rp, person):
    tokens = offline_tokens(portal, offline_rp, person)
    fresh = refresh(portal, offline_rp, tokens["refresh_token"]).json()
    reused = refresh(portal, offline_rp, tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert refresh(portal, offline_rp, fresh["refresh_token"]).status_code == 400
    assert userinfo(portal, fresh["access_token"]).status_code == 401


def test_sc61_a_refresh_token_is_bound_to_its_client(portal, offline_rp, rp, person):
    tokens = offline_tokens(portal, offline_rp, person)
    stolen = refresh(portal, rp, tokens["refresh_token"])
    assert stolen.status_code in (400, 401)
    assert refresh(portal, offline_rp, tokens["refresh_token"]).status_code == 200


def test_sc61_revocation_refuses_the_next_use(portal, offline_rp, person):
    tokens = offline_tokens(portal, offline_rp, person)
    endpoint = portal.discovery()["revocation_endpoint"]
    for kind in ("access_token", "refresh_token"):
        response = requests.post(
            endpoint,
            data={"token": tokens[kind], "token_type_hint": kind},
            auth=(offline_rp.client_id, offline_rp.secret),
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 200, response.text
    assert userinfo(portal, tokens["access_token"]).status_code == 401
    assert refresh(portal, offline_rp, tokens["refresh_token"]).status_code == 400
    # Revoking an unknown token is not an error (RFC 7009 2.2).
    unknown = requests.post(
        endpoint,
        data={"token": secrets.token_urlsafe(32)},
        auth=(offline_rp.client_id, offline_rp.secret),
        timeout=HTTP_TIMEOUT,
    )
    assert unknown.status_code == 200


# ------------------------------------------------------------------ policy (SC-63)


def test_sc63_a_person_outside_the_clients_subjects_gets_no_code(portal):
    client = portal.register(
        "Admins only", CALLBACK.replace("basic-op", "admins"), subjects=["group:admins"]
    )
    outsider = portal.person("outsider", groups=("users",))
    outcome = refused_at_the_portal(portal, client, outsider)
    assert outcome in ("page", "access_denied")
    member = portal.person("insider", groups=("admins",))
    tokens_of(portal, client, authorize(portal, client, member))


def test_sc63_a_person_removed_from_the_group_cannot_refresh(portal):
    client = portal.register(
        "Admins offline",
        CALLBACK.replace("basic-op", "admins-offline"),
        subjects=["group:admins"],
        offline=True,
    )
    member = portal.person("leaver", groups=("admins",))
    tokens = offline_tokens(portal, client, member)
    with portal.app.app_context():
        UserGroup.delete().where(
            (UserGroup.user == find_user(member.username)) & (UserGroup.name == "admins")
        ).execute()
    refused = refresh(portal, client, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


# ------------------------------------------------------------------ logout (SC-64)


def end_session(portal, http, **params) -> requests.Response:
    endpoint = portal.discovery()["end_session_endpoint"]
    return http.get(f"{endpoint}?{urlencode(params)}", allow_redirects=False, timeout=HTTP_TIMEOUT)


def still_signed_in(portal, rp, http) -> bool:
    """Whether the portal session holds: prompt=none gives a code without a page."""
    flow = authorize(portal, rp, None, http=http, prompt="none")
    return "code" in flow.answer


def test_sc64_logout_with_a_valid_hint_ends_the_session_and_returns_with_state(portal, rp, person):
    flow, tokens, _ = signed_in(portal, rp, person)
    response = end_session(
        portal,
        flow.http,
        id_token_hint=tokens["id_token"],
        post_logout_redirect_uri=LOGGED_OUT,
        state="opaque-state",
    )
    assert response.status_code in (302, 303), response.text[:500]
    target = urlsplit(response.headers["Location"])
    assert target._replace(query="").geturl() == LOGGED_OUT
    assert parse_qs(target.query) == {"state": ["opaque-state"]}
    assert not still_signed_in(portal, rp, flow.http)


def test_sc64_logout_without_state_returns_without_one(portal, rp, person):
    flow, tokens, _ = signed_in(portal, rp, person)
    response = end_session(
        portal, flow.http, id_token_hint=tokens["id_token"], post_logout_redirect_uri=LOGGED_OUT
    )
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == LOGGED_OUT


def forged_id_token(portal, claims) -> str:
    """The same claims signed by a key that is not the portal's, under its kid."""
    kid = jwks(portal).keys[0].kid
    key = RSAKey.generate_key(2048, parameters={"kid": kid})
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, key)


def test_sc64_logout_with_a_forged_hint_does_not_sign_out_or_redirect(portal, rp, person):
    flow, _, claims = signed_in(portal, rp, person)
    response = end_session(
        portal,
        flow.http,
        id_token_hint=forged_id_token(portal, claims),
        post_logout_redirect_uri=LOGGED_OUT,
    )
    assert not (response.is_redirect and response.headers["Location"].startswith(LOGGED_OUT))
    assert still_signed_in(portal, rp, flow.http)


def test_sc64_logout_to_an_unregistered_uri_is_never_followed(portal, rp, person):
    flow, tokens, _ = signed_in(portal, rp, person)
    evil = "http://127.0.0.1:9/evil"
    response = end_session(
        portal, flow.http, id_token_hint=tokens["id_token"], post_logout_redirect_uri=evil
    )
    assert not (response.is_redirect and response.headers["Location"].startswith(evil))
    if response.status_code == 200:  # a page: its links and forms go nowhere near it
        assert evil not in response.text


def test_sc64_logout_without_a_hint_asks_the_person_first(portal, rp, person):
    flow, _, _ = signed_in(portal, rp, person)
    response = end_session(portal, flow.http, post_logout_redirect_uri=LOGGED_OUT)
    assert not (response.is_redirect and response.headers["Location"].startswith(LOGGED_OUT))
    assert still_signed_in(portal, rp, flow.http)
