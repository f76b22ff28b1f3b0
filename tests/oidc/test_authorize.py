"""/authorize: the portal's own sign-in behind it, then the client's policy and
subjects, prompt and max_age; errors at the portal or at the registered redirect URI."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from support.app import PASSWORD
from support.oidc import (
    ISSUER,
    REDIRECT_URI,
    answer,
    authorize_path,
    code_for,
    exchange,
    pkce,
    register_client,
    verified_claims,
)
from support.steps import give_credential

from standalone_mfa.core.models import AuditEvent, OidcAuthorizationCode
from standalone_mfa.directory import groups
from standalone_mfa.directory.users import find_user


def _events(app, event):
    with app.app_context():
        rows = AuditEvent.select().where(AuditEvent.event == event)
        return [(e.outcome, e.username, e.detail) for e in rows]


def _no_code_made(app):
    with app.app_context():
        return OidcAuthorizationCode.select().count() == 0


# --- SC-57: redirect URIs -----------------------------------------------------------------

LOOK_ALIKES = [
    "https://app.example.com/oauth/callback/",
    "https://app.example.com/oauth/callback/extra",
    "https://app.example.com/oauth/callback?x=1",
    "https://app.example.com/oauth/callback#frag",
    "http://app.example.com/oauth/callback",
    "https://app.example.com:8443/oauth/callback",
    "https://app.example.com.evil.org/oauth/callback",
    "https://evil.org/oauth/callback",
    "https://APP.example.com/oauth/callback",
    "https://app.example.com/oauth/Callback",
    "https://user@app.example.com/oauth/callback",
    "",
    None,
]


@pytest.mark.parametrize("uri", LOOK_ALIKES)
def test_sc57_unregistered_redirect_uri_gets_a_page_never_a_redirect(app, browser, uri):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    verifier, challenge = pkce()
    response = browser.get(authorize_path(client, challenge, redirect_uri=uri))
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "not valid" in response.get_data(as_text=True)
    assert _no_code_made(app)


def test_sc57_unknown_client_gets_a_page(app, browser):
    register_client(app, policy="one_factor")
    browser.login("alice")
    response = browser.get(
        "/authorize?response_type=code&client_id=nobody-at-all-here-x&redirect_uri=" + REDIRECT_URI
    )
    assert response.status_code == 400 and "Location" not in response.headers


def test_sc57_another_clients_redirect_uri_is_refused(app, browser):
    mine = register_client(app, "Mine", policy="one_factor")
    theirs = ["https://theirs.example.com/cb"]
    register_client(app, "Theirs", redirect_uris=theirs, policy="one_factor")
    browser.login("alice")
    response = browser.get(
        authorize_path(mine, pkce()[1], redirect_uri="https://theirs.example.com/cb")
    )
    assert response.status_code == 400 and "Location" not in response.headers


def test_sc57_exact_registered_uri_with_errors_goes_back_with_state_and_iss(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    response = browser.get(authorize_path(client, pkce()[1], response_type="token"))
    found = answer(response)
    assert response.headers["Location"].startswith(REDIRECT_URI + "?")
    assert found["error"] == "unsupported_response_type"
    assert found["state"] == "st-1" and found["iss"] == ISSUER


# --- Sign-in behind /authorize ----------------------------------------------------------


def test_anonymous_goes_through_password_and_code_then_back(app, totp_app, new_browser, clock):
    secret = give_credential(app, clock, "alice")
    client = register_client(app, policy="two_factor")
    browser = new_browser()
    verifier, challenge = pkce()
    first = browser.get(authorize_path(client, challenge, nonce="n-1"))
    login = first.headers["Location"]
    assert urlsplit(login).path == "/login"
    browser.get(login)
    response = browser.post(login, {"username": "alice", "password": PASSWORD})
    assert response.headers["Location"] == "/mfa/verify"
    browser.get("/mfa/verify")
    clock.advance(30)
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    back = response.headers["Location"]
    assert back.startswith("/authorize?")
    found = answer(browser.get(back))
    assert found["state"] == "st-1" and found["iss"] == ISSUER
    tokens = exchange(app, client, found["code"], verifier).get_json()
    _, claims = verified_claims(app, tokens["id_token"], clock)
    assert claims["nonce"] == "n-1"
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["acr"] == "two_factor"


def test_first_sign_in_with_set_up_comes_back(app, totp_app, new_browser):
    client = register_client(app, policy="two_factor")
    browser = new_browser()
    _, challenge = pkce()
    login = browser.get(authorize_path(client, challenge)).headers["Location"]
    browser.get(login)
    assert (
        browser.post(login, {"username": "alice", "password": PASSWORD}).headers["Location"]
        == "/mfa/setup"
    )
    browser.get("/mfa/setup")
    secret = browser.setup_secret()
    assert browser.post("/mfa/setup", {"code": browser.code(secret)}).status_code == 302
    page = browser.page("/mfa/recovery-codes")
    assert page
    response = browser.post("/mfa/recovery-codes")
    back = response.headers["Location"]
    assert back.startswith("/authorize?")
    assert "code" in answer(browser.get(back))


# --- SC-63: the client's policy and subjects --------------------------------------------


def test_sc63_user_outside_the_subjects_gets_access_denied_and_an_audit_row(app, browser):
    client = register_client(app, policy="one_factor", subjects=["group:admins"])
    browser.login("alice")
    found = answer(browser.get(authorize_path(client, pkce()[1])))
    assert found == {"error": "access_denied", "state": "st-1", "iss": ISSUER}
    assert ("denied", "alice", "App") in _events(app, "oidc_signin")
    assert _no_code_made(app)


def test_sc63_user_in_the_group_may(app, browser):
    client = register_client(app, policy="one_factor", subjects=["group:admins", "user:bob"])
    with app.app_context():
        groups.add(find_user("alice"), "admins", actor="test")
    browser.login("alice")
    assert "code" in answer(browser.get(authorize_path(client, pkce()[1])))


def test_sc63_one_factor_session_on_a_two_factor_client_is_stepped_up(app, new_browser, clock):
    secret = give_credential(app, clock, "alice")  # MFA disabled site-wide: password only
    client = register_client(app, policy="two_factor")
    browser = new_browser()
    browser.login("alice")
    path = authorize_path(client, pkce()[1])
    page = browser.get(path)
    assert page.status_code == 200 and "second factor" in page.get_data(as_text=True)
    assert _no_code_made(app)
    # prompt=none never shows that page: interaction_required.
    found = answer(browser.get(authorize_path(client, pkce()[1], prompt="none")))
    assert found["error"] == "interaction_required" and found["state"] == "st-1"
    # The person's click: the code step, then back to the request.
    browser.get(path)
    response = browser.post("/authorize/step-up?" + urlencode_next(path), {})
    assert response.headers["Location"] == "/mfa/verify"
    browser.get("/mfa/verify")
    clock.advance(30)
    back = browser.post("/mfa/verify", {"code": browser.code(secret)}).headers["Location"]
    assert back == path
    assert "code" in answer(browser.get(back))


def urlencode_next(path):
    from urllib.parse import urlencode

    return urlencode({"next": path})


def test_sc63_step_up_without_the_click_changes_nothing(app, browser, clock):
    give_credential(app, clock, "alice")
    client = register_client(app, policy="two_factor")
    browser.login("alice")
    path = authorize_path(client, pkce()[1])
    response = browser.post("/authorize/step-up?" + urlencode_next(path), {}, csrf=False)
    assert response.status_code in (400, 302)
    assert browser.get("/").status_code == 200  # still signed in, nothing moved


def test_sc63_phishing_resistant_client_without_keys_says_how_to_add_one(app, browser):
    client = register_client(app, policy="phishing_resistant")
    browser.login("alice")
    page = browser.page(authorize_path(client, pkce()[1]))
    assert "You have none yet" in page
    assert _no_code_made(app)


def test_sc63_prompt_none_anonymous_is_login_required_without_a_page(app, browser):
    client = register_client(app, policy="one_factor")
    found = answer(browser.get(authorize_path(client, pkce()[1], prompt="none")))
    assert found == {"error": "login_required", "state": "st-1", "iss": ISSUER}


def _id_claims(app, client, code, verifier, clock):
    return verified_claims(
        app, exchange(app, client, code, verifier).get_json()["id_token"], clock
    )[1]


def test_sc63_prompt_none_signed_in_gets_a_code_same_sub_and_auth_time(app, browser, clock):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    first = _id_claims(app, client, code, verifier, clock)
    clock.advance(120)
    code, verifier = code_for(browser, client, prompt="none")
    second = _id_claims(app, client, code, verifier, clock)
    assert second["sub"] == first["sub"] and second["auth_time"] == first["auth_time"]


def test_sc63_prompt_none_with_another_value_is_invalid(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    found = answer(browser.get(authorize_path(client, pkce()[1], prompt="none login")))
    assert found["error"] == "invalid_request"


def test_sc63_prompt_login_signs_in_again(app, browser, clock):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    clock.advance(600)
    verifier, challenge = pkce()
    response = browser.get(authorize_path(client, challenge, prompt="login"))
    login = response.headers["Location"]
    assert urlsplit(login).path == "/login" and "prompt" not in login
    browser.get(login)
    back = browser.post(login, {"username": "alice", "password": PASSWORD}).headers["Location"]
    found = answer(browser.get(back))
    tokens = exchange(app, client, found["code"], verifier).get_json()
    claims = verified_claims(app, tokens["id_token"], clock)[1]
    assert claims["auth_time"] == int(clock.timestamp())


@pytest.mark.parametrize(("max_age", "again"), [(1, True), (10000, False), (0, True)])
def test_sc63_max_age(app, browser, clock, max_age, again):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    clock.advance(5)
    response = browser.get(authorize_path(client, pkce()[1], max_age=str(max_age)))
    if again:
        assert urlsplit(response.headers["Location"]).path == "/login"
        assert "max_age" not in response.headers["Location"]
    else:
        assert "code" in answer(response)


def test_sc63_max_age_with_prompt_none_is_login_required(app, browser, clock):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    clock.advance(60)
    found = answer(browser.get(authorize_path(client, pkce()[1], max_age="1", prompt="none")))
    assert found["error"] == "login_required"
    assert browser.get("/").status_code == 200  # prompt=none ended nothing


# --- Requests the Basic OP plan sends -------------------------------------------------------


def test_unknown_parameters_and_hints_are_ignored(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    found = answer(
        browser.get(
            authorize_path(
                client,
                pkce()[1],
                login_hint="alice",
                ui_locales="fr",
                claims_locales="de",
                acr_values="two_factor",
                foo="bar",
            )
        )
    )
    assert "code" in found


def test_request_object_is_refused(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    path = authorize_path(client, pkce()[1], request="eyJhbGciOiJub25lIn0.e30.")
    found = answer(browser.get(path))
    assert found["error"] in ("request_not_supported", "invalid_request")


def test_missing_response_type_is_an_error(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    found = answer(browser.get(authorize_path(client, pkce()[1], response_type=None)))
    assert found["error"] == "unsupported_response_type"


def test_sc63_prompt_none_while_signing_in_is_login_required(app, totp_app, new_browser, clock):
    give_credential(app, clock, "alice")
    client = register_client(app, policy="one_factor")
    browser = new_browser()
    assert browser.login("alice").headers["Location"] == "/mfa/verify"
    found = answer(browser.get(authorize_path(client, pkce()[1], prompt="none")))
    assert found["error"] == "login_required"
    # Without prompt=none: on to the step under way.
    response = browser.get(authorize_path(client, pkce()[1]))
    assert response.headers["Location"] == "/mfa/verify"
