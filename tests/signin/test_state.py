"""signin/state: the state machine and its guard: no page but the current step while
pending, the pending user is server state, pending lifetimes, no path around the
second factor, sessions after an MFA change (SC-09, SC-10, SC-12, SC-13, SC-19, SC-27)."""

from __future__ import annotations

import re

import pytest
from support.app import PASSWORD, make_app
from support.client import ARGUMENT, PLACEHOLDERS, Browser, signed_in_as
from support.db import (
    audit_events,
    bound_sessions,
    credential_count,
    credential_secret,
    mfa_method,
    sessions_of,
    set_method,
)
from support.oath import wrong_code
from support.pages import goes_to_login, location
from support.paths import ROOT
from support.steps import (
    enrol_then_pending_verify,
    pending_setup,
    pending_verify_with_credential,
    save_mfa_settings,
    signed_in_admin,
)

from standalone_mfa.accounts import reset
from standalone_mfa.core import crypto
from standalone_mfa.core.models import User, WebSession
from standalone_mfa.directory import settings, tokens
from standalone_mfa.directory.users import find_user
from standalone_mfa.factors import totp
from standalone_mfa.signin import state
from standalone_mfa.signin.state import AUTHENTICATED
from standalone_mfa.web import guard

STEP_PAGES = {"totp_setup": "/mfa/setup", "totp_verify": "/mfa/verify"}


def every_request(app):
    """(url, method, rule) for every rule of the app and every method it allows;
    sign-out comes last since it ends the session."""
    requests = []
    for rule in app.url_map.iter_rules():
        missing = set(rule.arguments) - PLACEHOLDERS.keys()
        assert not missing, f"add a placeholder for {missing} (rule {rule.rule})"
        url = ARGUMENT.sub(lambda m: PLACEHOLDERS[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            requests.append((url, method, rule))
    requests.sort(key=lambda r: (r[0] == "/logout", r[0], r[1]))
    return requests


def endpoint_of(app, url: str) -> str:
    return app.url_map.bind("localhost").match(url, method="GET")[0]


def every_url(app) -> list[str]:
    urls = {
        ARGUMENT.sub(lambda m: PLACEHOLDERS[m.group(1)], rule.rule)
        for rule in app.url_map.iter_rules()
    }
    return sorted(urls)


def reset_user(app, username):
    with app.app_context():
        assert reset.reset_totp(User.get(User.username == username), actor="root")


def session_rows(app, username):
    with app.app_context():
        query = WebSession.select().join(User).where(User.username == username)
        return list(query.order_by(WebSession.id))


def test_sign_in_doc_diagram_matches_transition_table():
    page = (ROOT / "docs" / "sign-in.md").read_text()
    block = page.split("```mermaid", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*(\w+) --> (\w+) : (\w+)\s*$", block, re.MULTILINE))
    table = {(source, target, event) for source, event, target in state.TRANSITIONS}
    assert drawn == table


# --- SC-09 forced browsing while pending


@pytest.mark.parametrize("pending_state", ["totp_setup", "totp_verify"])
def test_sc09_every_rule_redirects_to_current_step_while_pending(
    totp_app, new_browser, clock, pending_state
):
    if pending_state == "totp_setup":
        browser, secret = pending_setup(new_browser)
    else:
        browser, secret = enrol_then_pending_verify(new_browser, clock)
    step = STEP_PAGES[pending_state]
    assert browser.get(step).status_code == 200  # also picks up this session's CSRF token
    credential_before = credential_secret(totp_app, "alice")
    requests = every_request(totp_app)
    assert len(requests) >= 10  # the whole map, not an empty loop
    urls_seen = {url for url, _method, _rule in requests}
    assert {"/", "/login", "/logout", "/admin/", "/admin/mfa", step} <= urls_seen

    answered = set()
    for url, method, rule in requests:
        data = None
        if method == "POST":
            data = {
                "csrf_token": browser.token,
                "username": "bob",
                "password": PASSWORD,
                "code": wrong_code(secret, clock),
                "mfa_method": "disabled",
            }
        response = browser.client.open(url, method=method, data=data)
        what = f"{method} {url} ({rule.endpoint}) while {pending_state}"

        if url.startswith("/api/"):
            # No bearer token: the pending browser session is no credential for the API.
            assert response.status_code == 401, what
            assert response.is_json and "error" in response.get_json(), what
            continue
        if url == step and method == "GET":
            assert response.status_code == 200, what
            assert 'name="code"' in response.get_data(as_text=True), what
            answered.add(url)
            continue
        if url == step and method == "POST":
            # The step's own view judged the (wrong) code and said so.
            assert location(response) == step, what
            assert "That code is not right" in browser.page(step), what
            answered.add(url)
            continue
        if url == "/mfa/recovery" and pending_state == "totp_verify":
            # The other way through the code step: a recovery code (a wrong one here).
            if method == "GET":
                assert 'name="recovery_code"' in response.get_data(as_text=True), what
            else:
                assert location(response) == url, what
            answered.add(url)
            continue
        if url == "/mfa/setup/passkey" and pending_state == "totp_setup":
            # The other way through set-up: a passkey or security key (none made here).
            if method == "GET":
                assert 'id="passkey-create"' in response.get_data(as_text=True), what
            else:
                assert location(response) == url, what
            answered.add(url)
            continue
        if url == "/mfa/security-key" and pending_state == "totp_verify":
            # Alice has no key: the empty answer counts as a wrong one, back to the step.
            assert location(response) == step, what
            answered.add(url)
            continue
        if url.startswith(totp_app.static_url_path + "/"):
            assert response.status_code == 200, what
            answered.add(url)
            continue
        if url == "/healthz":
            # The load balancer's probe: no session, no state, only the database's health.
            assert response.get_json() == {"status": "ok"}, what
            continue
        if url.startswith("/auth/"):
            # The gateway's checks: no session, no state; without the proxy's headers
            # they describe no request, so they are refused.
            assert response.status_code == 403, what
            assert "Set-Cookie" not in response.headers, what
            continue
        if url == "/logout" and method == "GET":
            # The confirm form a protected app's "sign out" link leads to: nothing done.
            assert response.status_code == 200, what
            assert 'id="confirm-sign-out"' in response.get_data(as_text=True), what
            continue
        if url == "/logout":
            assert response.status_code == 302 and location(response) == "/login", what
            answered.add(url)
            continue
        if rule.endpoint.startswith("oidc_api.") or rule.endpoint in (
            "oidc.end_session",
            "oidc.authorize",
        ):
            # OpenID Connect, off here (no issuer): 404 whatever the state, nothing done.
            assert response.status_code == 404, what
            continue
        # Anything else: straight back to the current step, nothing done.
        assert response.status_code == 302, what
        assert location(response) == step, what

    also = (
        {"/mfa/recovery", "/mfa/security-key"}
        if pending_state == "totp_verify"
        else {"/mfa/setup/passkey"}
    )
    assert answered == {step, "/logout", "/static/style.css"} | also
    # Nothing the sweep sent changed anything: no credential, no new method, not bob.
    assert credential_secret(totp_app, "alice") == credential_before
    assert credential_secret(totp_app, "bob") is None
    assert mfa_method(totp_app) == "totp"
    assert sessions_of(totp_app, "bob") == []
    # Alice's only session left is the enrolling browser's (verify case): the pending
    # one was never promoted and the sign-out at the end unbound it.
    expected = [AUTHENTICATED] if pending_state == "totp_verify" else []
    assert [s.state for s in sessions_of(totp_app, "alice")] == expected
    # The sign-out at the end really ended the pending login.
    response = browser.get(step)
    assert response.status_code == 302 and location(response).startswith("/login")


def test_sc09_static_files_answer_while_pending(totp_app, new_browser):
    browser, _secret = pending_setup(new_browser)
    for name in ("style.css", "app.js"):
        response = browser.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.get_data()


# --- SC-09: HEAD and OPTIONS everywhere


@pytest.mark.parametrize("start", ["anonymous", "totp_setup", "totp_verify", "authenticated"])
def test_sc09_head_and_options_never_pass_the_guard_or_change_state(
    totp_app, new_browser, clock, start
):
    if start == "totp_verify":
        browser, _secret = pending_verify_with_credential(new_browser, totp_app, clock)
    elif start == "totp_setup":
        browser, _secret = pending_setup(new_browser)
    elif start == "authenticated":
        browser = new_browser()
        browser.enrol("bob")
    else:
        browser = new_browser()
        browser.get("/login")
    home = {
        "anonymous": "/login",
        "totp_setup": "/mfa/setup",
        "totp_verify": "/mfa/verify",
        "authenticated": "/",
    }[start]
    cookie = browser.cookie()
    sessions_before = bound_sessions(totp_app)
    urls = every_url(totp_app)
    assert {"/", "/admin/", "/admin/mfa", "/logout", "/mfa/setup", "/mfa/verify"} <= set(urls)
    post_only = {
        ARGUMENT.sub(lambda m: PLACEHOLDERS[m.group(1)], rule.rule)
        for rule in totp_app.url_map.iter_rules()
        if "GET" not in rule.methods
    }
    oidc_endpoints = {
        rule.rule: rule.endpoint
        for rule in totp_app.url_map.iter_rules()
        if rule.endpoint.startswith(("oidc.", "oidc_api."))
    }
    for url in urls:
        for method in ("HEAD", "OPTIONS"):
            response = browser.client.open(url, method=method)
            what = f"{method} {url} while {start}"
            assert response.status_code < 500, what
            if url.startswith("/api/"):
                assert response.status_code == 401, what  # no bearer token
                continue
            if url.startswith("/static/"):
                assert response.status_code == 200, what
                continue
            if url == "/healthz":  # the load balancer's probe: no session involved
                assert response.status_code == 200, what
                continue
            if url.startswith("/auth/"):
                # The gateway's checks: no session, no state. Without the proxy's headers
                # HEAD is refused (403); OPTIONS is not a check (Flask answers it).
                assert response.status_code in (200, 403), what
                assert "Set-Cookie" not in response.headers, what
                continue
            oidc = oidc_endpoints.get(url)
            if oidc and (oidc.startswith("oidc_api.") or guard.allowed(start, oidc)):
                # OpenID Connect, off here (no issuer): 404 (or Flask's OPTIONS answer).
                assert response.status_code in (200, 404, 405), what
                continue
            if url in post_only:
                # Only POST acts; HEAD is refused by routing, before any state is read.
                # OPTIONS is answered by Flask (or, where the state forbids it, redirected;
                # on an administrator's URL, refused to bob, who is none).
                refused = (403,) if start == "authenticated" and url.startswith("/admin/") else ()
                assert response.status_code in (200, 302, 405, *refused), what
                if response.status_code == 302:
                    assert location(response).split("?")[0] == home, what
                continue
            if start == "authenticated" and url.startswith("/admin/"):
                assert response.status_code == 403, what  # bob is no administrator
                continue
            if url == home:
                assert response.status_code == 200, what
            elif guard.allowed(start, endpoint_of(totp_app, url)):
                # Another page of this state (say, the account page): it answers, or
                # sends on to a page of the same state when it has nothing to show.
                assert response.status_code in (200, 302), what
                if response.status_code == 302:
                    target = location(response).split("?")[0]
                    assert guard.allowed(start, endpoint_of(totp_app, target)), what
            else:
                assert response.status_code == 302, what
                assert location(response).split("?")[0] == home, what
    # Nothing changed: the same cookie, the same server state, the same step.
    assert browser.cookie() == cookie
    assert bound_sessions(totp_app) == sessions_before
    assert browser.get(home).status_code == 200


# --- SC-09: a set-up POST after the set-up


def test_sc09_setup_post_after_setup_finished_in_this_browser_is_sent_home(
    totp_app, browser, clock
):
    browser.login()
    secret = browser.setup_secret()
    token = browser.token  # a second tab still shows the set-up form
    assert location(browser.submit_code("/mfa/setup", browser.code(secret))) == "/"
    clock.advance(totp.PERIOD)
    response = browser.client.post(
        "/mfa/setup", data={"code": browser.code(secret), "csrf_token": token}
    )
    assert response.status_code in (302, 400)
    assert signed_in_as(browser.client, "alice")
    assert len(bound_sessions(totp_app)) == 1


# --- SC-10 the pending user is server state


def test_sc10_forged_user_fields_on_verify_never_choose_the_account(totp_app, new_browser, clock):
    bob_secret = new_browser().enrol("bob")
    alice, alice_secret = enrol_then_pending_verify(new_browser, clock)
    with totp_app.app_context():
        bob_id = User.get(User.username == "bob").id
    forged = {"username": "bob", "user_id": str(bob_id), "user": "bob"}
    query = f"?username=bob&user_id={bob_id}&user=bob"

    # Bob's valid code, with bob named in the form or in the query: refused.
    for path, extra in (("/mfa/verify", forged), ("/mfa/verify" + query, {})):
        response = alice.post(path, {"code": alice.code(bob_secret), **extra})
        assert location(response) == "/mfa/verify", path
        assert not signed_in_as(alice, "bob")
        assert location(alice.get("/")) == "/mfa/verify"

    # Alice's code, with bob named everywhere: alice, never bob.
    response = alice.post("/mfa/verify" + query, {"code": alice.code(alice_secret), **forged})
    assert location(response) == "/"
    assert signed_in_as(alice, "alice")
    assert not signed_in_as(alice, "bob")


def test_sc10_forged_user_fields_on_setup_enrol_the_pending_user_only(totp_app, new_browser):
    alice, secret = pending_setup(new_browser)
    with totp_app.app_context():
        bob_id = User.get(User.username == "bob").id
    query = f"?username=bob&user_id={bob_id}"
    page = alice.page("/mfa/setup" + query)
    assert "Standalone MFA: alice" in page
    assert "bob" not in page

    data = {"code": alice.code(secret), "username": "bob", "user_id": str(bob_id)}
    response = alice.submit_code("/mfa/setup" + query, data)
    assert location(response) == "/"
    assert signed_in_as(alice, "alice")
    assert credential_secret(totp_app, "alice") == secret
    assert credential_secret(totp_app, "bob") is None


def test_sc10_interleaved_pending_logins_never_cross(totp_app, new_browser, clock):
    alice_secret = new_browser().enrol("alice")
    bob_secret = new_browser().enrol("bob")
    clock.advance(60)
    alice, bob = new_browser(), new_browser()
    assert location(alice.login("alice")) == "/mfa/verify"
    assert location(bob.login("bob")) == "/mfa/verify"
    alice.get("/mfa/verify")
    bob.get("/mfa/verify")

    # Each browser sends the other person's valid code: refused both ways.
    assert location(alice.post("/mfa/verify", {"code": alice.code(bob_secret)})) == ("/mfa/verify")
    assert location(bob.post("/mfa/verify", {"code": bob.code(alice_secret)})) == "/mfa/verify"
    assert not signed_in_as(alice, "bob") and not signed_in_as(alice, "alice")
    assert not signed_in_as(bob, "alice") and not signed_in_as(bob, "bob")

    # Each with their own code: each becomes themself, never the other.
    assert location(bob.post("/mfa/verify", {"code": bob.code(bob_secret)})) == "/"
    assert location(alice.post("/mfa/verify", {"code": alice.code(alice_secret)})) == "/"
    assert signed_in_as(alice, "alice") and not signed_in_as(alice, "bob")
    assert signed_in_as(bob, "bob") and not signed_in_as(bob, "alice")


def test_sc10_interleaved_setups_never_cross(totp_app, new_browser):
    alice, alice_secret = pending_setup(new_browser, "alice")
    bob, bob_secret = pending_setup(new_browser, "bob")
    assert alice_secret != bob_secret
    assert "Standalone MFA: bob" in bob.page("/mfa/setup")

    assert location(alice.post("/mfa/setup", {"code": alice.code(bob_secret)})) == "/mfa/setup"
    assert location(bob.post("/mfa/setup", {"code": bob.code(alice_secret)})) == "/mfa/setup"
    assert credential_count(totp_app) == 0

    assert location(bob.submit_code("/mfa/setup", {"code": bob.code(bob_secret)})) == "/"
    assert location(alice.submit_code("/mfa/setup", alice.code(alice_secret))) == "/"
    assert credential_secret(totp_app, "alice") == alice_secret
    assert credential_secret(totp_app, "bob") == bob_secret
    assert signed_in_as(alice, "alice") and signed_in_as(bob, "bob")


# --- SC-10 forged client-side state


def test_sc10_client_hints_in_query_headers_and_cookies_never_sign_in(
    totp_app, new_browser, clock
):
    alice, secret = enrol_then_pending_verify(new_browser, clock)
    with totp_app.app_context():
        root_id = User.get(User.username == "root").id
    forged_headers = {
        "X-Remote-User": "root",
        "X-Forwarded-User": "root",
        "Remote-User": "root",
        "X-User-Id": str(root_id),
    }
    for name, value in (("state", "authenticated"), ("user_id", str(root_id)), ("mfa", "ok")):
        alice.client.set_cookie(name, value)
    query = f"?state=authenticated&user_id={root_id}&second_factor=1"
    response = alice.post(
        "/mfa/verify" + query,
        {"code": wrong_code(secret, clock), "state": "authenticated"},
        headers=forged_headers,
    )
    assert location(response) == "/mfa/verify"
    for path in ("/", "/admin/mfa"):
        assert location(alice.get(path + query, headers=forged_headers)) == "/mfa/verify"
    assert not signed_in_as(alice, "alice") and not signed_in_as(alice, "root")


# --- SC-12 pending-state lifetime


def test_sc12_verify_step_expires_after_five_minutes_and_reloading_does_not_renew(
    totp_app, new_browser, clock
):
    alice, secret = enrol_then_pending_verify(new_browser, clock)
    for _ in range(4):  # reloading every minute
        clock.advance(60)
        assert alice.get("/mfa/verify").status_code == 200
    clock.advance(61)  # 5 min 1 s after the password step
    response = alice.post("/mfa/verify", {"code": alice.code(secret)})
    assert goes_to_login(response)
    assert "Your sign-in expired" in alice.page("/login")
    assert not signed_in_as(alice, "alice")
    # Server-side: the row is no longer bound to alice, and the expiry is audited.
    assert [s.state for s in session_rows(totp_app, "alice")] == ["authenticated"]
    assert [e.detail for e in audit_events(totp_app, "pending_expired")] == ["totp_verify"]


def test_sc12_setup_expires_after_ten_minutes_and_forgets_its_secret(totp_app, new_browser, clock):
    alice, secret = pending_setup(new_browser)
    clock.advance(9 * 60)
    assert alice.setup_secret() == secret  # still the same pending set-up
    clock.advance(61)
    # Whoever holds the cookie now (a copy of it, say) gets nothing back.
    response = alice.post("/mfa/setup", {"code": alice.code(secret)})
    assert goes_to_login(response)
    assert credential_secret(totp_app, "alice") is None
    assert session_rows(totp_app, "alice") == []
    with totp_app.app_context():
        assert (
            WebSession.select().where(WebSession.pending_secret_encrypted.is_null(False)).count()
            == 0
        )
    # Signing in again starts a new set-up with a new secret.
    alice.login()
    assert alice.setup_secret() != secret


def test_sc12_pending_lifetimes_are_configurable(tmp_path, clock):
    app = make_app(tmp_path, clock, MFA_VERIFY_TIMEOUT=60, MFA_SETUP_TIMEOUT=120)
    set_method(app, "totp")
    enrolling = Browser(app, clock)
    secret = enrolling.enrol()
    clock.advance(30)
    pending = Browser(app, clock)
    pending.login()
    clock.advance(61)
    assert goes_to_login(pending.post("/mfa/verify", {"code": pending.code(secret)}))
    setup = Browser(app, clock)
    setup.login("bob")
    clock.advance(121)
    assert goes_to_login(setup.get("/mfa/setup"))


def test_sc12_admin_reset_ends_a_pending_login(totp_app, new_browser, clock):
    alice, secret = enrol_then_pending_verify(new_browser, clock)
    reset_user(totp_app, "alice")
    response = alice.post("/mfa/verify", {"code": alice.code(secret)})
    assert goes_to_login(response)
    assert not signed_in_as(alice, "alice")
    assert session_rows(totp_app, "alice") == []


# --- SC-13 no path around the second factor


def test_sc13_password_step_never_signs_in_when_totp_is_on(totp_app, new_browser, clock):
    new_browser().enrol("root")  # an enrolled admin, and users not yet enrolled
    clock.advance(60)
    for username, step, pending in (
        ("root", "/mfa/verify", "totp_verify"),
        ("alice", "/mfa/setup", "totp_setup"),
    ):
        person = new_browser()
        response = person.login(username, next="/admin/mfa")
        assert location(response) == step, username
        for path in ("/", "/admin/", "/admin/mfa"):
            assert location(person.get(path)) == step, (username, path)
        assert not signed_in_as(person, username)
        assert pending in {s.state for s in session_rows(totp_app, username)}


def test_sc13_an_api_token_opens_no_browser_page(totp_app, new_browser):
    with totp_app.app_context():
        token = tokens.create_token(User.get(User.username == "root"), actor="test")
    client = totp_app.test_client()
    for path in ("/", "/admin/", "/admin/mfa"):
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert goes_to_login(response), path
    # Nor does the token work as a session cookie.
    client.set_cookie(totp_app.config["SESSION_COOKIE_NAME"], token)
    assert goes_to_login(client.get("/admin/mfa"))
    with totp_app.app_context():
        assert WebSession.select().where(WebSession.user.is_null(False)).count() == 0


def test_sc13_only_a_code_or_the_disabled_policy_leads_to_authenticated():
    """The state table is the only way into `authenticated`; a new way in (say a
    remembered device) has to be added here on purpose, with its own SC-13 test."""
    ways_in = {
        (source, event) for source, event, target in state.TRANSITIONS if target == "authenticated"
    }
    assert ways_in == {
        ("password_ok", "mfa_disabled"),
        # Outside the policy's scope, no authenticator: …_out_of_scope_… (signin/test_policy)
        ("password_ok", "mfa_not_required"),
        # "Set up later" within the grace: test_sc13_setup_later_… (signin/test_policy)
        ("totp_setup", "setup_postponed"),
        ("password_ok", "device_remembered"),  # test_sc13_remembered_device_of_one_user_…
        ("recovery_codes", "codes_saved"),  # after code_confirmed: the set-up's code
        ("totp_verify", "code_accepted"),
        ("totp_verify", "recovery_code_accepted"),  # test_sc13_recovery_code_of_another_…
        # The user's own key: test_sc52_another_users_key_does_not_pass_the_code_step
        ("totp_verify", "security_key_accepted"),
        # User verification required: test_sc54_… (test_passkey_signin)
        ("anonymous", "passkey_accepted"),
    }
    # A second factor was proven on every way in but the disabled policy's.
    assert (state.TOTP_SETUP, "code_confirmed", state.RECOVERY_CODES) in state.TRANSITIONS
    assert (state.TOTP_SETUP, "key_registered", state.RECOVERY_CODES) in state.TRANSITIONS


def test_sc13_password_only_session_from_disabled_policy_must_pass_totp_once_it_is_on(
    app, new_browser, clock
):
    alice = new_browser()
    assert location(alice.login()) == "/"
    set_method(app, "totp")
    response = alice.get("/admin/")
    assert goes_to_login(response)
    assert location(alice.login()) == "/mfa/setup"


# --- SC-19 sessions after an MFA change


def test_sc19_sessions_through_enrolment_policy_change_and_reset(app, new_browser, clock):
    """The checklist's sequence: two sessions open, then Disabled -> TOTP, enrolment,
    then an admin reset."""
    first, second = new_browser(), new_browser()
    assert location(first.login()) == "/" and location(second.login()) == "/"
    bob = new_browser()
    bob.login("bob")

    set_method(app, "totp")
    # Neither password-only session survives; each must pass the second factor.
    for person in (first, second):
        assert goes_to_login(person.get("/"))
    assert goes_to_login(bob.get("/"))

    secret = first.enrol()
    assert signed_in_as(first, "alice")
    # The other browser signs in again and now needs a code, not a set-up.
    clock.advance(60)
    assert location(second.login()) == "/mfa/verify"
    second.post("/mfa/verify", {"code": second.code(secret)})
    assert signed_in_as(second, "alice")
    bob_secret = bob.enrol("bob")
    assert bob_secret

    reset_user(app, "alice")
    for person in (first, second):
        assert goes_to_login(person.get("/"))
    assert session_rows(app, "alice") == []
    assert signed_in_as(bob, "bob")  # another user's session is untouched


def test_sc19_a_session_proven_with_totp_survives_a_policy_round_trip(app, new_browser, clock):
    set_method(app, "totp")
    proven = new_browser()
    proven.enrol()
    set_method(app, "disabled")
    clock.advance(60)
    password_only = new_browser()
    assert location(password_only.login()) == "/"
    set_method(app, "totp")
    assert signed_in_as(proven, "alice")
    assert goes_to_login(password_only.get("/"))


def test_sc19_pending_setup_in_another_browser_must_use_the_enrolled_app(
    totp_app, new_browser, clock
):
    winner, winner_secret = pending_setup(new_browser)
    loser, loser_secret = pending_setup(new_browser)
    assert winner_secret != loser_secret
    winner.post("/mfa/setup", {"code": winner.code(winner_secret)})
    clock.advance(60)
    # The other pending set-up cannot enrol its own secret any more.
    response = loser.post("/mfa/setup", {"code": loser.code(loser_secret)})
    assert location(response) == "/mfa/verify"
    assert not signed_in_as(loser, "alice")
    loser.get("/mfa/verify")  # the step moved on: its form has a new CSRF token
    assert credential_secret(totp_app, "alice") == winner_secret
    assert location(loser.post("/mfa/verify", {"code": loser.code(loser_secret)})) == (
        "/mfa/verify"
    )
    assert location(loser.post("/mfa/verify", {"code": loser.code(winner_secret)})) == "/"


# --- SC-27: the policy toggle


def test_sc27_switch_to_totp_ends_password_only_sessions(app, clock, new_browser):
    alice = new_browser()
    assert alice.login().headers["Location"] == "/"
    admin = signed_in_admin(app, clock)
    save_mfa_settings(admin, {"mfa_method": "totp"})
    assert mfa_method(app) == "totp"
    response = alice.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(("/login", "/mfa/setup"))


@pytest.mark.parametrize("step", ["totp_setup", "totp_verify"])
def test_sc27_method_disabled_while_user_pending_then_submit(totp_app, new_browser, clock, step):
    if step == "totp_setup":
        browser, secret = pending_setup(new_browser)
        path = "/mfa/setup"
    else:
        browser, secret = pending_verify_with_credential(new_browser, totp_app, clock)
        path = "/mfa/verify"
    with totp_app.app_context():
        settings.set_mfa_method("disabled", actor="root")
    response = browser.post(path, {"code": wrong_code(secret, clock)})
    assert response.status_code == 302 and location(response) == path
    response = browser.submit_code(path, {"code": browser.code(secret)})
    assert response.status_code == 302 and location(response) == "/"
    assert signed_in_as(browser.client, "alice")
    # The credential is kept (SC-27: existing credentials are not dropped).
    with totp_app.app_context():
        credential = totp.credential_of(find_user("alice"))
        assert crypto.decrypt(credential.secret_encrypted) == secret
