"""RP-initiated logout: a valid hint ends the session and goes to the registered
target; anything else asks first; an unregistered target is never followed."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from support.client import signed_in_as
from support.oidc import ISSUER, code_for, exchange, register_client

AFTER = "https://app.example.com/signed-out"


def _signed_in_with_id_token(app, browser, **options):
    client = register_client(
        app, policy="one_factor", post_logout_redirect_uris=[AFTER], **options
    )
    browser.login("alice")
    code, verifier = code_for(browser, client)
    tokens = exchange(app, client, code, verifier).get_json()
    return client, tokens


def test_sc64_valid_hint_ends_the_session_and_follows_the_registered_target(app, browser):
    client, tokens = _signed_in_with_id_token(app, browser)
    query = urlencode(
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": AFTER, "state": "s9"}
    )
    response = browser.get("/end-session?" + query)
    assert response.status_code == 302
    assert response.headers["Location"] == AFTER + "?state=s9"
    assert not signed_in_as(browser, "alice")
    # The session's access tokens end with it.
    info = app.test_client().get(
        "/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}
    )
    assert info.status_code == 401


def test_sc64_forged_hint_asks_first(app, browser):
    client, tokens = _signed_in_with_id_token(app, browser)
    forged = jwt.encode(
        {"alg": "RS256"},
        {"iss": ISSUER, "aud": client.client_id, "sub": "x"},
        RSAKey.generate_key(2048),
    )
    query = urlencode({"id_token_hint": forged, "post_logout_redirect_uri": AFTER})
    response = browser.get("/end-session?" + query)
    assert response.status_code == 200 and "Sign out?" in response.get_data(as_text=True)
    assert signed_in_as(browser, "alice")


@pytest.mark.parametrize("hint", [None, "garbage", "a.b.c"])
def test_sc64_no_or_malformed_hint_asks_first_then_ends_on_the_click(app, browser, hint):
    client, _ = _signed_in_with_id_token(app, browser)
    params = {"client_id": client.client_id, "post_logout_redirect_uri": AFTER, "state": "s"}
    if hint:
        params["id_token_hint"] = hint
    page = browser.get("/end-session?" + urlencode(params))
    assert page.status_code == 200 and signed_in_as(browser, "alice")
    response = browser.post(
        "/end-session",
        {"client_id": client.client_id, "post_logout_redirect_uri": AFTER, "state": "s"},
    )
    assert response.headers["Location"] == AFTER + "?state=s"
    assert not signed_in_as(browser, "alice")


def test_sc64_confirmation_without_csrf_ends_nothing(app, browser):
    _signed_in_with_id_token(app, browser)
    browser.post("/end-session", {}, csrf=False)
    assert signed_in_as(browser, "alice")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.org/",
        AFTER + "/more",
        AFTER + "?x=1",
        "https://app.example.com/oauth/callback",  # a redirect URI, not a logout one
    ],
)
def test_sc64_unregistered_target_is_never_followed(app, browser, target):
    client, tokens = _signed_in_with_id_token(app, browser)
    query = urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": target})
    response = browser.get("/end-session?" + query)
    assert target not in response.headers.get("Location", "")
    assert response.headers.get("Location") == "/login"


def test_sc64_hint_for_another_issuer_asks_first(app, browser, monkeypatch):
    client, tokens = _signed_in_with_id_token(app, browser)
    app.config["OIDC_ISSUER"] = "https://other.example.com"
    query = urlencode({"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": AFTER})
    response = browser.get("/end-session?" + query)
    assert response.status_code == 200 and signed_in_as(browser, "alice")


def test_anonymous_goes_to_the_registered_target(app, browser):
    client = register_client(app, policy="one_factor", post_logout_redirect_uris=[AFTER])
    query = urlencode({"client_id": client.client_id, "post_logout_redirect_uri": AFTER})
    assert browser.get("/end-session?" + query).headers["Location"] == AFTER
