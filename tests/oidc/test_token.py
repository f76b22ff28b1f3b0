"""The token endpoint: PKCE, codes, client authentication, refresh tokens, revocation
and the ID token, as a client (and an attacker holding a copy) sees them."""

from __future__ import annotations

import base64
import json

import pytest
from support.oidc import (
    ISSUER,
    code_for,
    exchange,
    pkce,
    register_client,
    token_request,
    verified_claims,
)

from standalone_mfa.core import crypto
from standalone_mfa.core.models import AuditEvent, OidcClient, OidcToken, User
from standalone_mfa.directory import groups
from standalone_mfa.directory.users import find_user


def _bearer(app, access_token, method="GET"):
    headers = {"Authorization": "Bearer " + access_token}
    client = app.test_client()
    return (
        client.get("/userinfo", headers=headers)
        if method == "GET"
        else client.post("/userinfo", headers=headers)
    )


def _tokens(app, browser, client, **params):
    browser.login("alice") if browser.get("/").status_code != 200 else None
    code, verifier = code_for(browser, client, **params)
    response = exchange(app, client, code, verifier)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- SC-58: PKCE ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},  # no challenge at all (a confidential client too)
        {"code_challenge": "x" * 43, "code_challenge_method": "plain"},
        {"code_challenge": "x" * 43},  # no method: RFC 7636's default is plain
    ],
)
def test_sc58_authorization_without_s256_is_refused(app, browser, params):
    from support.oidc import answer, authorize_path

    client = register_client(app, policy="one_factor")
    browser.login("alice")
    found = answer(browser.get(authorize_path(client, None, **params)))
    assert found["error"] == "invalid_request" and found["state"] == "st-1"


def test_sc58_wrong_or_missing_verifier_is_refused(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, _ = code_for(browser, client)
    assert exchange(app, client, code, pkce()[0]).get_json()["error"] == "invalid_grant"
    code, _ = code_for(browser, client)
    assert exchange(app, client, code, None).get_json()["error"] == "invalid_request"


def test_sc58_public_client_needs_pkce_and_no_secret(app, browser):
    client = register_client(app, policy="one_factor", public=True)
    browser.login("alice")
    code, verifier = code_for(browser, client)
    response = exchange(app, client, code, verifier, method="none")
    assert response.status_code == 200 and "id_token" in response.get_json()
    code, _ = code_for(browser, client)
    assert exchange(app, client, code, None, method="none").status_code == 400


# --- SC-59: codes -----------------------------------------------------------------------------


def test_sc59_second_use_is_refused_and_revokes_what_the_first_gave(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    first = exchange(app, client, code, verifier).get_json()
    assert _bearer(app, first["access_token"]).status_code == 200
    again = exchange(app, client, code, verifier)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert _bearer(app, first["access_token"]).status_code == 401
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "oidc_code_reused").count() == 1


def test_sc59_a_race_lost_between_check_and_claim_gets_nothing(app, browser, monkeypatch):
    """Two exchanges of one code at once: both read it unused; the claim in the
    transaction that stores the tokens lets one through. The loser stores no token,
    gets invalid_grant, and revokes what the winner got (a copy is out there)."""
    from standalone_mfa.core.clock import now
    from standalone_mfa.core.models import OidcAuthorizationCode
    from standalone_mfa.oidc import tokens

    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    checked = tokens.live_code

    def winner_claims_in_between(code, client):
        row = checked(code, client)
        OidcAuthorizationCode.update(used_at=now()).where(
            OidcAuthorizationCode.id == row.id
        ).execute()  # the other request's claim, after this one's check
        return row

    monkeypatch.setattr(tokens, "live_code", winner_claims_in_between)
    response = exchange(app, client, code, verifier)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    with app.app_context():
        assert OidcToken.select().count() == 0
        assert AuditEvent.select().where(AuditEvent.event == "oidc_code_reused").count() == 1


def test_sc59_another_clients_code_is_refused(app, browser):
    mine = register_client(app, "Mine", policy="one_factor")
    other = register_client(app, "Other", policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, mine)
    response = exchange(app, other, code, verifier)
    assert response.get_json()["error"] == "invalid_grant"
    assert exchange(app, mine, code, verifier).status_code == 200  # not burnt by the other


def test_sc59_code_after_60_seconds_is_refused(app, browser, clock):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    clock.advance(61)
    assert exchange(app, client, code, verifier).get_json()["error"] == "invalid_grant"


def test_sc59_different_redirect_uri_at_the_token_endpoint_is_refused(app, browser):
    client = register_client(
        app,
        policy="one_factor",
        redirect_uris=["https://app.example.com/cb", "https://app.example.com/cb2"],
    )
    browser.login("alice")
    code, verifier = code_for(browser, client)
    response = exchange(app, client, code, verifier, redirect_uri="https://app.example.com/cb2")
    assert response.get_json()["error"] == "invalid_grant"


def test_sc59_codes_are_stored_hashed(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, _ = code_for(browser, client)
    from standalone_mfa.core.models import OidcAuthorizationCode

    with app.app_context():
        row = OidcAuthorizationCode.get()
        assert row.code_hash == crypto.hash_token(code) and code not in repr(row.__data__)


# --- SC-60: client authentication -------------------------------------------------------------


@pytest.mark.parametrize("method", ["basic", "post"])
def test_sc60_both_secret_methods_work(app, browser, method):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    assert exchange(app, client, code, verifier, method=method).status_code == 200


@pytest.mark.parametrize("method", ["basic", "post"])
def test_sc60_wrong_secret_is_refused_and_audited(app, browser, method):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    client.secret = "not-the-secret"
    response = exchange(app, client, code, verifier, method=method)
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "oidc_client_auth").count() == 1


def test_sc60_confidential_client_id_without_its_secret_is_refused(app, browser):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    response = exchange(app, client, code, verifier, method="none")
    assert response.get_json()["error"] == "invalid_client"


def test_sc60_secret_stored_hashed(app):
    client = register_client(app, policy="one_factor")
    with app.app_context():
        row = OidcClient.get(OidcClient.client_id == client.client_id)
        assert client.secret not in json.dumps(row.__data__, default=str)


def test_sc60_failures_are_throttled_per_address(app, browser):
    client = register_client(app, policy="one_factor")
    client.secret = "wrong"
    statuses = [exchange(app, client, "nothing", "v" * 43).status_code for _ in range(40)]
    assert 429 in statuses


# --- SC-61: access and refresh tokens ------------------------------------------------------


def test_sc61_tokens_stored_hashed(app, browser):
    client = register_client(app, policy="one_factor", offline=True)
    tokens = _tokens(app, browser, client, scope="openid offline_access")
    with app.app_context():
        row = OidcToken.get()
        dumped = json.dumps(row.__data__, default=str)
        assert tokens["access_token"] not in dumped and tokens["refresh_token"] not in dumped
        assert row.access_token_hash == crypto.hash_token(tokens["access_token"])


def test_sc61_refresh_only_for_an_offline_client_asking_offline_access(app, browser):
    online = register_client(app, "Online", policy="one_factor")
    assert "refresh_token" not in _tokens(app, browser, online, scope="openid offline_access")
    offline = register_client(app, "Offline", policy="one_factor", offline=True)
    assert "refresh_token" not in _tokens(app, browser, offline, scope="openid")
    assert "refresh_token" in _tokens(app, browser, offline, scope="openid offline_access")


@pytest.mark.parametrize("method", ["basic", "post"])
def test_sc61_refresh_rotates_with_either_secret_method(app, browser, method):
    client = register_client(app, policy="one_factor", offline=True)
    first = _tokens(app, browser, client, scope="openid offline_access")
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = token_request(app, client, form, method=method)
    assert second.status_code == 200, second.get_json()
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _bearer(app, second["access_token"]).status_code == 200


def test_sc61_reused_refresh_token_revokes_its_family(app, browser):
    client = register_client(app, policy="one_factor", offline=True)
    first = _tokens(app, browser, client, scope="openid offline_access")
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = token_request(app, client, form).get_json()
    replay = token_request(app, client, form)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert _bearer(app, second["access_token"]).status_code == 401
    form = {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}
    assert token_request(app, client, form).status_code == 400
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "oidc_refresh_reused").count() >= 1


def test_sc61_public_client_refreshes_without_a_secret(app, browser):
    client = register_client(app, policy="one_factor", offline=True, public=True)
    browser.login("alice")
    code, verifier = code_for(browser, client, scope="openid offline_access")
    first = exchange(app, client, code, verifier, method="none").get_json()
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    assert token_request(app, client, form, method="none").status_code == 200


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_sc61_revocation_refuses_the_next_use(app, browser, hint):
    client = register_client(app, policy="one_factor", offline=True)
    tokens = _tokens(app, browser, client, scope="openid offline_access")
    form = {"token": tokens["refresh_token"]}
    if hint:
        form["token_type_hint"] = hint
    raw = f"{client.client_id}:{client.secret}".encode()
    response = app.test_client().post(
        "/revoke", data=form, headers={"Authorization": "Basic " + base64.b64encode(raw).decode()}
    )
    assert response.status_code == 200
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert token_request(app, client, refresh).status_code == 400
    assert _bearer(app, tokens["access_token"]).status_code == 401


def test_sc61_revoking_an_access_token_with_post_auth(app, browser):
    client = register_client(app, policy="one_factor")
    tokens = _tokens(app, browser, client)
    form = {
        "token": tokens["access_token"],
        "client_id": client.client_id,
        "client_secret": client.secret,
    }
    assert app.test_client().post("/revoke", data=form).status_code == 200
    assert _bearer(app, tokens["access_token"]).status_code == 401


def test_sc61_another_client_cannot_revoke(app, browser):
    mine = register_client(app, "Mine", policy="one_factor")
    other = register_client(app, "Other", policy="one_factor")
    tokens = _tokens(app, browser, mine)
    form = {
        "token": tokens["access_token"],
        "client_id": other.client_id,
        "client_secret": other.secret,
    }
    app.test_client().post("/revoke", data=form)
    assert _bearer(app, tokens["access_token"]).status_code == 200


def test_sc61_expired_access_token_is_refused(app, browser, clock):
    client = register_client(app, policy="one_factor")
    tokens = _tokens(app, browser, client)
    clock.advance(3601)
    assert _bearer(app, tokens["access_token"]).status_code == 401


# --- SC-62: the ID token -----------------------------------------------------------------------


def test_sc62_id_token_claims_and_header(app, browser, clock):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    signed_in = int(clock.timestamp())
    clock.advance(300)
    code, verifier = code_for(browser, client, nonce="abc")
    token = exchange(app, client, code, verifier).get_json()["id_token"]
    header, claims = verified_claims(app, token, clock)
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == ISSUER
    assert client.client_id in claims["aud"]
    assert claims["iat"] == int(clock.timestamp())
    assert claims["exp"] == claims["iat"] + 3600
    assert claims["auth_time"] == signed_in  # the sign-in, not the code (pitfall 3)
    assert claims["nonce"] == "abc"


def test_sc62_no_nonce_claim_unless_sent(app, browser, clock):
    client = register_client(app, policy="one_factor")
    tokens = _tokens(app, browser, client)
    payload = tokens["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "nonce" not in claims


def test_sc62_never_alg_none(app, browser):
    discovery = app.test_client().get("/.well-known/openid-configuration").get_json()
    assert "none" not in discovery["id_token_signing_alg_values_supported"]
    client = register_client(app, policy="one_factor")
    tokens = _tokens(app, browser, client)
    header = tokens["id_token"].split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    assert decoded["alg"] == "RS256"


def test_profile_email_groups_in_the_id_token_and_userinfo(app, browser, clock):
    with app.app_context():
        alice = find_user("alice")
        User.update(email="alice@example.com", pending_email="new@example.com").where(
            User.id == alice.id
        ).execute()
        groups.add(alice, "admins", actor="test")
    client = register_client(app, policy="one_factor")
    tokens = _tokens(app, browser, client)
    _, claims = verified_claims(app, tokens["id_token"], clock)
    info = _bearer(app, tokens["access_token"]).get_json()
    for found in (claims, info):
        assert found["preferred_username"] == "alice"
        assert found["email"] == "alice@example.com" and found["email_verified"] is True
        assert found["groups"] == ["admins"]
        assert found["sub"] != "alice" and found["sub"] == claims["sub"]


def test_pending_address_is_never_sent(app, browser):
    with app.app_context():
        User.update(pending_email="new@example.com").where(User.username == "alice").execute()
    client = register_client(app, policy="one_factor")
    info = _bearer(app, _tokens(app, browser, client)["access_token"]).get_json()
    assert "email" not in info and "email_verified" not in info


def test_scope_limits_the_claims(app, browser, clock):
    client = register_client(app, policy="one_factor")
    tokens = _tokens(app, browser, client, scope="openid")
    info = _bearer(app, tokens["access_token"]).get_json()
    assert set(info) == {"sub"}
    assert tokens["scope"] == "openid"


def test_unknown_scopes_are_dropped_not_refused(app, browser):
    client = register_client(app, policy="one_factor")
    tokens = _tokens(app, browser, client, scope="phone openid address profile")
    assert tokens["scope"] == "openid profile"


# --- SC-63: a user removed from the group holds a refresh token ---------------------------


def test_sc63_removed_from_the_group_cannot_refresh(app, browser):
    with app.app_context():
        groups.add(find_user("alice"), "admins", actor="test")
    client = register_client(app, policy="one_factor", offline=True, subjects=["group:admins"])
    tokens = _tokens(app, browser, client, scope="openid offline_access")
    with app.app_context():
        groups.remove(find_user("alice"), "admins", actor="test")
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    response = token_request(app, client, form)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_sc63_deleted_user_loses_every_token(app, browser):
    client = register_client(app, policy="one_factor", offline=True)
    tokens = _tokens(app, browser, client, scope="openid offline_access")
    with app.app_context():
        find_user("alice").delete_instance(recursive=True)
        assert OidcToken.select().count() == 0
    assert _bearer(app, tokens["access_token"]).status_code == 401


# --- Userinfo ----------------------------------------------------------------------------------


def test_userinfo_by_get_post_header_and_post_body(app, browser):
    client = register_client(app, policy="one_factor")
    access = _tokens(app, browser, client)["access_token"]
    http = app.test_client()
    assert _bearer(app, access).status_code == 200
    assert _bearer(app, access, method="POST").status_code == 200
    body = http.post("/userinfo", data={"access_token": access})
    assert body.status_code == 200 and body.get_json()["preferred_username"] == "alice"


def test_userinfo_without_or_with_a_bad_token(app):
    http = app.test_client()
    response = http.get("/userinfo")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    response = http.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and "invalid_token" in response.headers["WWW-Authenticate"]


def test_userinfo_needs_the_openid_scope(app, browser):
    client = register_client(app, policy="one_factor")
    access = _tokens(app, browser, client, scope="profile")["access_token"]
    assert _bearer(app, access).status_code == 401


def test_no_deprecated_authlib_path_is_taken(app, browser):
    """Pitfall 10: no `get_jwt_config`, `get_audiences` or `authlib.jose` on the way."""
    import warnings

    client = register_client(app, policy="one_factor", offline=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokens = _tokens(app, browser, client, scope="openid offline_access")
        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        assert token_request(app, client, form).status_code == 200
    deprecated = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert not [str(w.message) for w in deprecated if "authlib" in str(w.filename)]


def test_sc63_reset_user_loses_every_token(app, browser, clock):
    from support.steps import give_credential

    from standalone_mfa.accounts import reset

    give_credential(app, clock, "alice")
    client = register_client(app, policy="one_factor", offline=True)
    tokens = _tokens(app, browser, client, scope="openid offline_access")
    with app.app_context():
        assert reset.reset_totp(find_user("alice"), actor="root")
    assert _bearer(app, tokens["access_token"]).status_code == 401
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert token_request(app, client, form).status_code == 400
