"""The portal's OpenID provider proven with relying parties nobody here wrote, offline
on 127.0.0.1 (docs/oidc/interop.md): Authlib's OAuth client, pyoidc (`oic`), panva's
openid-client (npm, strict) under the machine's Node.js, and Debian's Apache httpd with
mod_auth_openidc protecting a directory. Each does the authorization code flow with
S256 PKCE against the real portal under gunicorn; the person's browser in between is
`browser_hop` (the password, then a code from the person's authenticator).

One portal for the module, one Apache; each test its own client and people."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet
from oic import rndstr
from oic.oic import Client as OicClient
from oic.oic.message import AuthorizationResponse, OpenIDSchema, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from support.apache import apache_openidc, apache_ports, seen_by_apache
from support.oidc_live import (
    SCOPE,
    HopError,
    authorization_url,
    browser_hop,
    fresh_browser,
    id_token_claims,
    jwks,
    oidc_portal,
    token_post,
)
from support.paths import ROOT
from support.servers import HTTP_TIMEOUT

from standalone_mfa.oidc import keys as signing_keys

pytestmark = pytest.mark.server

OPENID_CLIENT = ROOT / "tests" / "oidc_clients"
CLIENT_SCRIPT = OPENID_CLIENT / "client.mjs"
NODE_TIMEOUT = 60


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    with oidc_portal(tmp_path_factory.mktemp("oidc-clients")) as portal:
        yield portal


def callback(name: str) -> str:
    """A redirect URI on a loopback port nobody listens on: the browser is never
    sent there (the hop stops at it), the client reads the URL itself."""
    return f"http://127.0.0.1:9/{name}/callback"


def amr_of(value) -> set[str]:
    return set(value.split(",")) if isinstance(value, str) else set(value)


# ------------------------------------------------------------------ Authlib


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_code_flow_pkce_nonce_id_token_verified_with_jwks(portal, auth_method):
    """Authlib's OAuth2Session (S256 PKCE, a nonce), the ID token's signature checked
    with the portal's JWKS by joserfc, then iss, aud, nonce and exp; userinfo by GET
    with the bearer header carries the person's groups."""
    redirect_uri = callback(f"authlib-{auth_method}")
    client = portal.register(f"Authlib {auth_method}", redirect_uri)
    person = portal.person("authlib", groups=("admins", "users"))
    meta = portal.discovery()
    assert meta["issuer"] == portal.url

    session = OAuth2Session(
        client.client_id,
        client.secret,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=auth_method,
    )
    session.trust_env = False
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    back = browser_hop(fresh_browser(), url, person, redirect_uri)
    assert parse_qs(urlsplit(back).query)["state"] == [state]
    token = session.fetch_token(
        meta["token_endpoint"], authorization_response=back, code_verifier=verifier
    )
    assert token["token_type"].lower() == "bearer"

    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=HTTP_TIMEOUT).json())
    decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256", "ES256"])
    assert decoded.header["alg"] in ("RS256", "ES256") and decoded.header.get("kid")
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": portal.url},
        aud={"essential": True, "value": client.client_id},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        auth_time={"essential": True},
    ).validate(decoded.claims)
    claims = decoded.claims
    assert claims["sub"] != person.username
    assert {"otp", "mfa"} <= amr_of(claims["amr"])

    info = session.get(meta["userinfo_endpoint"], timeout=HTTP_TIMEOUT)
    assert info.status_code == 200, info.text
    userinfo = info.json()
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["preferred_username"] == person.username
    assert sorted(userinfo["groups"]) == ["admins", "users"]


# ------------------------------------------------------------------ pyoidc (oic)


def test_pyoidc_client_secret_post_verified_id_token_and_userinfo_by_post_body(portal):
    """pyoidc: provider_config (it refuses an issuer other than the URL it asked),
    client_secret_post at the token endpoint, the ID token verified by oic (signature
    by the JWKS, iss, aud, exp), the nonce back; userinfo by its default, a POST with
    the token in the form body (research pitfall 8), and by GET with the header."""
    redirect_uri = callback("pyoidc")
    registered = portal.register("pyoidc", redirect_uri)
    person = portal.person("pyoidc", groups=("users",))

    client = OicClient(client_authn_method=CLIENT_AUTHN_METHOD)
    client.provider_config(portal.url)
    assert client.provider_info["issuer"] == portal.url
    client.store_registration_info(
        RegistrationResponse(
            client_id=registered.client_id,
            client_secret=registered.secret,
            redirect_uris=[redirect_uri],
            token_endpoint_auth_method="client_secret_post",
        )
    )
    client.redirect_uris = [redirect_uri]
    state, nonce = rndstr(), rndstr()
    pkce, verifier = client.add_code_challenge()
    request = client.construct_AuthorizationRequest(
        request_args={
            "client_id": registered.client_id,
            "response_type": "code",
            "scope": SCOPE.split(),
            "nonce": nonce,
            "redirect_uri": redirect_uri,
            "state": state,
            **pkce,
        }
    )
    back = browser_hop(
        fresh_browser(), request.request(client.authorization_endpoint), person, redirect_uri
    )
    answer = client.parse_response(
        AuthorizationResponse, info=urlsplit(back).query, sformat="urlencoded"
    )
    assert answer["state"] == state

    tokens = client.do_access_token_request(
        state=state,
        request_args={
            "code": answer["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        authn_method="client_secret_post",
    )
    id_token = tokens["id_token"]  # already verified by oic, or it raised
    assert id_token["iss"] == portal.url
    assert registered.client_id in id_token["aud"]
    assert id_token["nonce"] == nonce
    assert id_token.jws_header["kid"]

    by_post = client.do_user_info_request(state=state)  # POST, the token in the body
    assert isinstance(by_post, OpenIDSchema)
    assert by_post["sub"] == id_token["sub"]
    assert by_post["preferred_username"] == person.username
    assert by_post["groups"] == ["users"]
    by_get = client.do_user_info_request(state=state, method="GET")
    assert by_get["sub"] == id_token["sub"]


# ------------------------------------------------------------------ openid-client (npm)


def run_openid_client(portal, client, person, auth: str, offline: bool = False) -> dict:
    """client.mjs under node: it prints the authorization URL, the browser hop gives
    it back the redirect, it prints what it got (see the script)."""
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (OPENID_CLIENT / "node_modules" / "openid-client").exists(), (
        "openid-client is missing: `make test` runs npm ci in tests/oidc_clients"
    )
    config = {
        "issuer": portal.url,
        "client_id": client.client_id,
        "client_secret": client.secret,
        "redirect_uri": client.redirect_uri,
        "auth": auth,
        "offline": offline,
    }
    process = subprocess.Popen(  # noqa: S603 -- the machine's node, our script
        [node, str(CLIENT_SCRIPT), json.dumps(config)],
        cwd=OPENID_CLIENT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(process.stdout.readline() or "{}")
        if "authorize" not in first:
            process.stdin.close()
            process.wait(timeout=NODE_TIMEOUT)
            pytest.fail(f"openid-client stopped first: {first} {process.stderr.read()}")
        back = ""
        try:
            back = browser_hop(fresh_browser(), first["authorize"], person, client.redirect_uri)
        finally:  # the script waits for a line: an empty one if the browser failed
            process.stdin.write(back + "\n")
            process.stdin.flush()
        out, err = process.communicate(timeout=NODE_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, f"openid-client printed nothing: {err}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("auth", ["basic", "default"])
def test_openid_client_strict_code_flow_with_basic_and_its_default_post(portal, auth):
    """openid-client 6 as it ships (strict): discovery (issuer checked), S256 PKCE,
    expectedState and expectedNonce, the ID token's claims checked by oauth4webapi,
    fetchUserInfo (its sub must match); with ClientSecretBasic and with its default,
    client_secret_post (the mismatch peers' users keep reporting, research A2 #4)."""
    client = portal.register(f"openid-client {auth}", callback(f"openid-client-{auth}"))
    person = portal.person("node", groups=("users",))
    result = run_openid_client(portal, client, person, auth)
    assert "error" not in result, result
    claims, userinfo = result["claims"], result["userinfo"]
    assert claims["iss"] == portal.url and claims["aud"] in (client.client_id, [client.client_id])
    assert userinfo["sub"] == claims["sub"]
    assert userinfo["preferred_username"] == person.username
    assert userinfo["groups"] == ["users"]
    assert {"otp", "mfa"} <= amr_of(claims["amr"])


def test_openid_client_refreshes_an_offline_token_then_revokes(portal):
    """An `offline` client asking for offline_access: openid-client refreshes (the
    refresh token rotated), then revokes the access token, which userinfo refuses."""
    client = portal.register(
        "openid-client offline", callback("openid-client-offline"), offline=True
    )
    person = portal.person("nodeoffline")
    result = run_openid_client(portal, client, person, "basic", offline=True)
    assert "error" not in result, result
    assert result["refreshed"]["new_refresh_token"] is True
    assert result["refreshed"]["userinfo"] == result["claims"]["sub"]
    assert result["revoked"] == 401, result


# ------------------------------------------------------------------ Apache mod_auth_openidc


@pytest.fixture(scope="module")
def apache(portal, tmp_path_factory):
    """Apache with mod_auth_openidc, registered at the portal as a confidential client
    with the administrator's command (its redirect URI under /protected/, its logout
    page as post-logout URI)."""
    port, url, redirect_uri, logged_out = apache_ports()
    client = portal.register_with_cli(
        "Apache mod_auth_openidc",
        *("--redirect-uri", redirect_uri),
        *("--post-logout-redirect-uri", logged_out),
    )
    folder = tmp_path_factory.mktemp("apache")
    with apache_openidc(
        folder, port, portal.url, client.client_id, client.secret, redirect_uri, group="admins"
    ) as base:
        assert base == url
        yield client, base, logged_out, folder


def through_apache(apache, person, path: str, http=None):
    """A browser opening `path` at Apache: sent to the portal, the sign-in, back to
    mod_auth_openidc's redirect URI, which exchanges the code, then the page."""
    client, base, _, _ = apache
    http = http or fresh_browser()
    back = browser_hop(http, base + path, person, client.redirect_uri)
    return http, http.get(back, timeout=HTTP_TIMEOUT)


def apache_log(apache) -> str:
    return (apache[3] / "error.log").read_text(errors="replace")


def test_apache_mod_auth_openidc_signs_a_person_into_a_protected_directory(portal, apache):
    """The whole redirect flow, as curl -L does it: /protected/ → the portal's
    /authorize → the sign-in → /protected/redirect_uri?code=… → /protected/ 200, with
    REMOTE_USER the person's preferred_username and the claims Apache passes on:
    groups, and amr with otp and mfa after a sign-in with a code."""
    person = portal.person("apache", groups=("admins", "users"))
    _, page = through_apache(apache, person, "/protected/")
    assert page.status_code == 200, apache_log(apache)[-3000:]
    assert page.text == "hello from protected\n"
    seen = seen_by_apache(page)
    assert seen["REMOTE_USER"] == person.username
    assert seen["OIDC_CLAIM_preferred_username"] == person.username
    assert set(seen["OIDC_CLAIM_groups"].split(",")) == {"admins", "users"}
    assert {"otp", "mfa"} <= set(seen["OIDC_CLAIM_amr"].split(","))


def test_apache_require_claim_groups_lets_members_in_and_keeps_others_out(portal, apache):
    member = portal.person("apacheadmin", groups=("admins",))
    _, page = through_apache(apache, member, "/protected/admins/")
    assert page.status_code == 200, apache_log(apache)[-3000:]
    assert seen_by_apache(page)["REMOTE_USER"] == member.username

    other = portal.person("apacheuser", groups=("users",))
    http, page = through_apache(apache, other, "/protected/")
    assert page.status_code == 200
    refused = http.get(apache[1] + "/protected/admins/", timeout=HTTP_TIMEOUT)
    assert refused.status_code in (401, 403)


def test_apache_logout_ends_the_portal_session_through_end_session(portal, apache):
    """mod_auth_openidc's logout (its redirect URI with ?logout=): its session ends,
    it sends the browser to the portal's end_session_endpoint with its id_token_hint
    and the registered post_logout_redirect_uri; the portal signs the person out and
    returns there. The next visit asks for the password again."""
    client, base, logged_out, _ = apache
    person = portal.person("apachelogout")
    http, page = through_apache(apache, person, "/protected/")
    assert page.status_code == 200

    response = http.get(
        f"{client.redirect_uri}?logout={quote(logged_out, safe='')}",
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 302
    to_portal = response.headers["Location"]
    assert to_portal.startswith(portal.discovery()["end_session_endpoint"])
    assert "id_token_hint=" in to_portal
    landed = http.get(to_portal, timeout=HTTP_TIMEOUT)
    assert landed.url == logged_out, (landed.status_code, landed.url, landed.text[:500])

    seen: list[str] = []
    again = browser_hop(http, base + "/protected/", person, client.redirect_uri, seen)
    assert "/login" in seen, seen
    assert http.get(again, timeout=HTTP_TIMEOUT).status_code == 200


def test_apache_without_a_sign_in_never_shows_the_page(portal, apache):
    """A browser that does not sign in stays at the portal: no code, no page."""
    _, base, _, _ = apache
    with pytest.raises(HopError):
        browser_hop(fresh_browser(), base + "/protected/", None, apache[0].redirect_uri)


def test_apache_follows_a_key_rotation_and_old_id_tokens_still_verify(portal, apache):
    """`oidc keys rotate` (as the command does it) while Apache holds the old JWKS:
    once the portal signs with the new key, mod_auth_openidc meets an unknown `kid`,
    fetches the JWKS again and signs the next person in; an ID token signed before
    the rotation still verifies with the published keys (the old public key stays)."""
    raw = portal.register("Before the rotation", callback("rotation"))
    before = authorization_url(portal, raw)
    back = browser_hop(fresh_browser(), before.url, portal.person("rotation"), raw.redirect_uri)
    code = parse_qs(urlsplit(back).query)["code"][0]
    exchanged = token_post(
        portal,
        raw,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": raw.redirect_uri,
            "code_verifier": before.verifier,
        },
    )
    old_token = exchanged.json()["id_token"]
    old_header, _ = id_token_claims(portal, old_token)
    _, page = through_apache(apache, portal.person("apachebefore"), "/protected/")
    assert page.status_code == 200

    with portal.app.app_context():
        new_kids = signing_keys.rotate()
    assert old_header["kid"] not in new_kids
    time.sleep(signing_keys.CHECK_SECONDS + 0.5)  # each worker's key cache, re-read

    person = portal.person("apacheafter")
    _, page = through_apache(apache, person, "/protected/")
    assert page.status_code == 200, apache_log(apache)[-3000:]
    assert seen_by_apache(page)["REMOTE_USER"] == person.username
    published = {key.kid for key in jwks(portal).keys}
    assert old_header["kid"] in published and set(new_kids) <= published
    header, _ = id_token_claims(portal, old_token)
    assert header["kid"] == old_header["kid"]
