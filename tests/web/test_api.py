"""web/api: the admin API (enrolment, reset, users, unlock): a bearer token only, JSON
answers, and odd paths or headers never reach another user (SC-13, SC-24)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from support.app import START
from support.client import api_request, totp_api
from support.db import (
    audit_events,
    credential,
    failures,
    sessions_of,
    set_code_failures,
)
from support.steps import api_token, signed_in_admin

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.crypto import hash_token
from standalone_mfa.core.models import ApiToken, User
from standalone_mfa.directory import groups

ODD_API_NAMES = [
    "a%2Fbob",
    "..",
    "%2e%2e",
    ".%2e",
    "%C3%A9",
    "bob%00",
    "%ff",
    "b%C3%B6b",
    "a" * 5000,
    "bob%2F..%2Fbob",
    "*",
    "%25",
]


# --- SC-24: who may use the API


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_sc24_api_without_token_is_401_json(totp_app, browser, method):
    browser.enrol()
    response = totp_api(totp_app, method, "alice")
    assert response.status_code == 401
    assert response.is_json
    assert "error" in response.get_json()
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert credential(totp_app, "alice") is not None


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer smfa_not-a-real-token",
        "Bearer ",
        "Bearer",
        "Basic cm9vdDpjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl",
        "Bearer " + "x" * 500,
        "smfa_valid",  # a real token without the scheme (replaced below)
        "Bearer smfa_valid!",  # a real token with one character more
    ],
)
def test_sc24_api_bad_token_is_401(totp_app, browser, authorization):
    browser.enrol()
    real = api_token(totp_app, "root")
    authorization = authorization.replace("smfa_valid", real)
    for method in ("GET", "DELETE"):
        response = totp_api(totp_app, method, "alice", headers={"Authorization": authorization})
        assert response.status_code == 401, method
        assert response.is_json
        assert "WWW-Authenticate" in response.headers
    assert credential(totp_app, "alice") is not None


def test_sc24_api_bad_token_does_not_reveal_unknown_users(app):
    response = totp_api(app, "GET", "nobody", "smfa_wrong")
    assert response.status_code == 401


def test_sc24_api_normal_user_token_is_403(totp_app, browser):
    browser.enrol()
    bob_token = api_token(totp_app, "bob")
    alice_token = api_token(totp_app, "alice")
    for token in (bob_token, alice_token):  # another user's credential, and one's own
        for method in ("GET", "DELETE"):
            response = totp_api(totp_app, method, "alice", token)
            assert response.status_code == 403, method
            assert response.is_json
            assert "enrolled" not in response.get_json()
        assert totp_api(totp_app, "GET", "nobody", token).status_code == 403
    assert credential(totp_app, "alice") is not None
    assert audit_events(totp_app, "totp_reset") == []


def test_sc24_api_admin_token_is_allowed(totp_app, browser):
    browser.enrol()
    token = api_token(totp_app, "root")
    assert totp_api(totp_app, "GET", "alice", token).status_code == 200
    assert totp_api(totp_app, "DELETE", "alice", token).status_code == 204


def test_sc24_api_ignores_browser_session(totp_app, clock, browser):
    browser.enrol()
    admin = signed_in_admin(totp_app, clock)
    # The admin's fully signed-in browser, without a bearer token: 401.
    for method in ("GET", "DELETE"):
        response = totp_api(totp_app, method, "alice", client=admin.client)
        assert response.status_code == 401, method
        assert "Set-Cookie" not in response.headers
    # An admin cookie does not lift a normal user's token.
    response = totp_api(
        totp_app, "DELETE", "alice", api_token(totp_app, "bob"), client=admin.client
    )
    assert response.status_code == 403
    assert credential(totp_app, "alice") is not None


def test_sc24_api_token_opens_no_browser_session(totp_app, browser):
    browser.enrol("root")
    token = api_token(totp_app, "root")
    client = totp_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/", "/admin/", "/admin/mfa"):
        response = client.get(path, headers=headers)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login")
    response = totp_api(totp_app, "GET", "root", token)
    assert "Set-Cookie" not in response.headers


def test_sc24_api_call_neither_loads_nor_keeps_alive_a_browser_session(totp_app, clock, browser):
    """The API is sessionless for the session interface as for the guard: a signed-in
    admin's cookie sent along with the token is not read, so the session is neither
    touched (its last activity stays) nor set again."""
    browser.enrol()
    admin = signed_in_admin(totp_app, clock)
    (before,) = sessions_of(totp_app, "root")
    clock.advance(10 * 60)
    token = api_token(totp_app, "root")
    response = totp_api(totp_app, "GET", "alice", token, client=admin.client)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    (after,) = sessions_of(totp_app, "root")
    assert after.last_seen_at == before.last_seen_at


# --- the reset API


def test_api_get_reports_enrolment(totp_app, browser, clock):
    token = api_token(totp_app, "root")
    response = totp_api(totp_app, "GET", "alice", token)
    assert response.status_code == 200
    assert response.get_json() == {
        "username": "alice",
        "enrolled": False,
        "confirmed_at": None,
        "groups": [],
    }

    clock.advance(7)
    browser.enrol()
    response = totp_api(totp_app, "GET", "alice", token)
    assert response.status_code == 200
    body = response.get_json()
    assert body["username"] == "alice"
    assert body["enrolled"] is True
    assert isinstance(body["confirmed_at"], str)
    confirmed = dt.datetime.fromisoformat(body["confirmed_at"])
    assert confirmed == (START + dt.timedelta(seconds=7)).replace(tzinfo=dt.UTC)
    # Nothing about the secret goes out.
    assert set(body) == {"username", "enrolled", "confirmed_at", "groups"}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_api_unknown_user_is_404_json(app, method):
    response = totp_api(app, method, "nobody", api_token(app, "root"))
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"]


def test_api_delete_without_credential_is_404(totp_app):
    token = api_token(totp_app, "root")
    response = totp_api(totp_app, "DELETE", "bob", token)
    assert response.status_code == 404
    assert response.is_json
    assert audit_events(totp_app, "totp_reset") == []


def test_api_delete_enrolled_user_is_204_then_404(totp_app, browser):
    browser.enrol()
    token = api_token(totp_app, "root")
    response = totp_api(totp_app, "DELETE", "alice", token)
    assert response.status_code == 204
    assert response.get_data() == b""
    assert totp_api(totp_app, "GET", "alice", token).get_json()["enrolled"] is False
    assert totp_api(totp_app, "DELETE", "alice", token).status_code == 404


def test_api_tokens_are_stored_hashed(app):
    token = api_token(app, "root")
    assert token.startswith("smfa_")
    with app.app_context():
        (row,) = ApiToken.select()
        assert row.token_hash == hash_token(token)
        assert token not in json.dumps(row.__data__, default=str)
        assert token[len("smfa_") :] not in json.dumps(row.__data__, default=str)


# --- GET /api/v1/users


def test_api_users_lists_mfa_status(totp_app, clock, new_browser):
    new_browser().enrol("alice")
    set_code_failures(totp_app, "bob", DEFAULTS["MFA_LOCK_AFTER"])
    response = api_request(totp_app, "GET", "/api/v1/users", api_token(totp_app, "root"))
    assert response.status_code == 200
    body = response.get_json()
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (1, 50, 3, 1)
    by_name = {u["username"]: u for u in body["users"]}
    assert list(by_name) == ["alice", "bob", "root"]
    assert by_name["alice"] == {
        "username": "alice",
        "is_admin": False,
        "enrolled": True,
        "confirmed_at": "2026-11-28T12:00:00Z",
        "last_sign_in": "2026-11-28T12:00:00Z",
        "code_failures": 0,
        "throttle": "ok",
        "password_failures": 0,
        "password_throttled": False,
        "groups": [],
        "email": None,
        "email_pending": None,
        "webauthn_keys": 0,
    }
    assert by_name["bob"]["enrolled"] is False
    assert by_name["bob"]["throttle"] == "locked"
    assert by_name["root"]["is_admin"] is True
    assert "password_hash" not in response.get_data(as_text=True)


def test_api_user_objects_carry_their_groups_sorted(app):
    with app.app_context():
        for username, group in (("alice", "wiki"), ("alice", "Staff"), ("bob", "staff")):
            groups.add(User.get(User.username == username), group, actor="test")
    token = api_token(app, "root")
    body = api_request(app, "GET", "/api/v1/users", token).get_json()
    assert {u["username"]: u["groups"] for u in body["users"]} == {
        "alice": ["Staff", "wiki"],  # by code point: upper case first, on every database
        "bob": ["staff"],
        "root": [],
    }
    assert api_request(app, "GET", "/api/v1/users?q=bob", token).get_json()["users"][0][
        "groups"
    ] == ["staff"]
    assert totp_api(app, "GET", "alice", token).get_json()["groups"] == ["Staff", "wiki"]
    # Removed: gone from both at once.
    with app.app_context():
        groups.remove(User.get(User.username == "alice"), "wiki", actor="test")
    assert totp_api(app, "GET", "alice", token).get_json()["groups"] == ["Staff"]


def test_api_users_pagination_and_search(app):
    with app.app_context():
        User.insert_many(
            [
                {"username": f"user{i:02d}", "password_hash": "x", "created_at": START}
                for i in range(25)
            ]
        ).execute()
    token = api_token(app, "root")
    body = api_request(app, "GET", "/api/v1/users?per_page=10&page=3", token).get_json()
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (3, 10, 28, 3)
    assert [u["username"] for u in body["users"]] == [f"user{i:02d}" for i in range(17, 25)]
    body = api_request(app, "GET", "/api/v1/users?q=user1", token).get_json()
    assert [u["username"] for u in body["users"]] == [f"user{i}" for i in range(10, 20)]
    assert api_request(app, "GET", "/api/v1/users?page=9", token).get_json()["users"] == []


@pytest.mark.parametrize(
    "query", ["page=0", "page=-1", "page=x", "per_page=0", "per_page=201", "page=" + "9" * 5000]
)
def test_api_users_bad_pagination_is_400_json(app, query):
    response = api_request(app, "GET", f"/api/v1/users?{query}", api_token(app, "root"))
    assert response.status_code == 400
    assert response.is_json
    assert "must be a whole number from 1 to" in response.get_json()["error"]


def test_sc24_api_users_needs_an_admin_token(app):
    for path, method in (("/api/v1/users", "GET"), ("/api/v1/users/alice/unlock", "POST")):
        response = api_request(app, method, path)
        assert response.status_code == 401
        assert response.is_json
        assert api_request(app, method, path, "smfa_forged").status_code == 401
        response = api_request(app, method, path, api_token(app, "alice"))
        assert response.status_code == 403
        assert "users" not in response.get_json()
    assert audit_events(app, "unlock") == []


def test_sc24_api_unlock_ignores_a_browser_session(app, clock):
    set_code_failures(app, "bob", DEFAULTS["MFA_LOCK_AFTER"])
    admin = signed_in_admin(app, clock)
    response = admin.client.post("/api/v1/users/bob/unlock")
    assert response.status_code == 401
    assert failures(app, "bob") == DEFAULTS["MFA_LOCK_AFTER"]


# --- POST /api/v1/users/<username>/unlock


def test_api_unlock_clears_the_code_throttle_and_is_audited(totp_app, new_browser):
    alice = new_browser()
    alice.enrol()
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    token = api_token(totp_app, "root")
    response = api_request(totp_app, "POST", "/api/v1/users/alice/unlock", token)
    assert response.status_code == 200
    assert response.get_json() == {"username": "alice", "unlocked": True, "failures_cleared": 50}
    assert failures(totp_app, "alice") == 0
    assert len(sessions_of(totp_app, "alice")) == 1  # unlocking ends no session
    (event,) = audit_events(totp_app, "unlock")
    assert (event.username, event.actor, event.outcome) == ("alice", "root", "ok")
    again = api_request(totp_app, "POST", "/api/v1/users/alice/unlock", token).get_json()
    assert again == {"username": "alice", "unlocked": False, "failures_cleared": 0}
    assert audit_events(totp_app, "unlock")[-1].outcome == "unchanged"


def test_api_unlock_unknown_user_is_404_with_a_message(app):
    response = api_request(app, "POST", "/api/v1/users/nobody/unlock", api_token(app, "root"))
    assert response.status_code == 404
    assert response.get_json() == {"error": "No such user."}
    assert (
        api_request(app, "GET", "/api/v1/users/alice/unlock", api_token(app, "root")).status_code
        == 405
    )
    assert audit_events(app, "unlock") == []


def test_api_delete_totp_of_locked_user_without_credential_is_404_pointing_to_unlock(
    totp_app, new_browser
):
    # Stuck in set-up: no credential, but locked by wrong codes, and signed in pending.
    pending = new_browser()
    assert pending.login().headers["Location"] == "/mfa/setup"
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    token = api_token(totp_app, "root")
    response = api_request(totp_app, "DELETE", "/api/v1/users/alice/totp", token)
    assert response.status_code == 404
    assert "/api/v1/users/alice/unlock" in response.get_json()["error"]
    # Nothing was reset: no "an administrator reset your MFA" for a user who had none.
    assert failures(totp_app, "alice") == DEFAULTS["MFA_LOCK_AFTER"]
    assert len(sessions_of(totp_app, "alice")) == 1
    assert audit_events(totp_app, "totp_reset") == []
    with totp_app.app_context():
        assert User.get(User.username == "alice").mfa_reset_at is None
    assert api_request(totp_app, "POST", "/api/v1/users/alice/unlock", token).status_code == 200
    assert failures(totp_app, "alice") == 0


# --- SC-24: the token is checked before the method


def test_sc24_api_wrong_method_without_token_is_401(app):
    for method in ("HEAD", "GET", "PUT"):
        response = api_request(app, method, "/api/v1/users/alice/unlock")
        assert response.status_code == 401, method
    assert (
        api_request(app, "PUT", "/api/v1/users/alice/unlock", api_token(app, "alice")).status_code
        == 403
    )
    assert (
        api_request(app, "PUT", "/api/v1/users/alice/unlock", api_token(app, "root")).status_code
        == 405
    )


# --- SC-24: odd headers and paths


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer   ",
        "Basic cm9vdDpwYXNzd29yZA==",
        "Bearer " + "x" * 10_000,
        "Bearer {token}x",
        "Bearer {token} extra",
        "Bearer\t{token}",
        "Token {token}",
        "{token}",
        "Bearer {upper}",
        "Bearer {token}\x00",
        "Bearer \u00e9",
    ],
    ids=lambda a: repr(a[:20]),
)
def test_sc24_malformed_authorization_header_is_401(totp_app, authorization):
    token = api_token(totp_app)
    value = authorization.format(token=token, upper=token.upper())
    response = totp_app.test_client().delete(
        "/api/v1/users/alice/totp", headers={"Authorization": value}
    )
    assert response.status_code == 401
    assert response.is_json and response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", ["bearer {token}", "BEARER {token}", "Bearer  {token}"])
def test_sc24_bearer_scheme_is_case_insensitive(totp_app, authorization):
    token = api_token(totp_app)
    response = totp_app.test_client().get(
        "/api/v1/users/alice/totp", headers={"Authorization": authorization.format(token=token)}
    )
    assert response.status_code == 200


def test_sc24_odd_api_paths_never_500_and_never_reach_another_user(totp_app, new_browser):
    new_browser().enrol("bob")
    token = api_token(totp_app)
    client = totp_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for name in ODD_API_NAMES:
        for method in ("GET", "DELETE"):
            response = client.open(f"/api/v1/users/{name}/totp", method=method, headers=headers)
            what = f"{method} {name[:20]}"
            assert response.status_code == 404, what
            assert response.is_json, what
    assert credential(totp_app, "bob") is not None
