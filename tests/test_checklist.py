"""The checklist items the flow tests left thin: pending-state lifetime (SC-12), no path
around the second factor (SC-13), cookies over HTTPS (SC-16), session timeouts
(SC-17), sessions after an MFA change (SC-19), no self-service change of the factor
without proof (SC-21), and headers, errors and the 413 page (SC-31).

Each test acts as a user or an attacker and looks at what they would observe: the
status, where the browser lands, the headers, and what the database holds afterwards.
"""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, Browser, make_app
from test_login_security import (
    ARGUMENT,
    PLACEHOLDERS,
    credential_secret,
    enrol_then_pending_verify,
    location,
    pending_setup,
    signed_in_as,
    table_dump,
    wrong_code,
)

from standalone_mfa.accounts import reset, settings, tokens
from standalone_mfa.core.models import AuditEvent, TotpCredential, User, WebSession
from standalone_mfa.signin import state


def set_method(app, method):
    with app.app_context():
        settings.set_mfa_method(method, actor="test")


def reset_user(app, username):
    with app.app_context():
        assert reset.reset_totp(User.get(User.username == username), actor="root")


def audit_events(app, event):
    with app.app_context():
        return list(AuditEvent.select().where(AuditEvent.event == event).order_by(AuditEvent.id))


def session_rows(app, username):
    with app.app_context():
        query = WebSession.select().join(User).where(User.username == username)
        return list(query.order_by(WebSession.id))


def goes_to_login(response) -> bool:
    return response.status_code == 302 and location(response).startswith("/login")


# ------------------------------------------------------- SC-12 pending-state lifetime


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


# ----------------------------------------------- SC-13 no path around the second factor


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
        ("password_ok", "device_remembered"),  # test_sc13_remembered_device_of_one_user_…
        ("recovery_codes", "codes_saved"),  # after code_confirmed: the set-up's code
        ("totp_verify", "code_accepted"),
        ("totp_verify", "recovery_code_accepted"),  # test_sc13_recovery_code_of_another_…
    }
    # A second factor was proven on every way in but the disabled policy's.
    assert (state.TOTP_SETUP, "code_confirmed", state.RECOVERY_CODES) in state.TRANSITIONS


def test_sc13_password_only_session_from_disabled_policy_must_pass_totp_once_it_is_on(
    app, new_browser, clock
):
    alice = new_browser()
    assert location(alice.login()) == "/"
    set_method(app, "totp")
    response = alice.get("/admin/")
    assert goes_to_login(response)
    assert location(alice.login()) == "/mfa/setup"


# --------------------------------------------------------------- SC-16 cookies over HTTPS


def set_cookie_headers(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def test_sc16_served_over_https_the_cookie_is_secure_and_host_prefixed(app, clock):
    """No setting needed: a request that arrived over HTTPS gets a Secure cookie."""
    client = app.test_client()
    response = client.get("/login", base_url="https://mfa.example")
    (header,) = set_cookie_headers(response)
    assert header.startswith("__Host-smfa_session=")
    assert "; Secure" in header and "; HttpOnly" in header and "SameSite=Lax" in header
    assert "Path=/" in header and "Domain=" not in header
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    # The whole sign-in works over HTTPS with that cookie, without a Referer header
    # (browsers send none under our Referrer-Policy: no-referrer).
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', response.text).group(1)
    response = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        base_url="https://mfa.example",
    )
    assert location(response) == "/"
    (header,) = set_cookie_headers(response)
    assert header.startswith("__Host-smfa_session=") and "; Secure" in header
    page = client.get("/", base_url="https://mfa.example").text
    assert 'id="signed-in-user">alice<' in page
    # The CSRF token is still required over HTTPS.
    response = client.post("/logout", base_url="https://mfa.example")
    assert response.status_code == 400
    assert 'id="signed-in-user">alice<' in client.get("/", base_url="https://mfa.example").text


def test_sc16_every_cookie_of_a_full_sign_in_is_httponly_and_samesite(
    totp_app, new_browser, clock
):
    alice = new_browser()
    responses = [alice.get("/login"), alice.login()]
    secret = alice.setup_secret()
    responses.append(alice.post("/mfa/setup", {"code": alice.code(secret)}))
    responses += [alice.save_recovery_codes(), alice.logout()]
    clock.advance(60)
    responses += [alice.login(), alice.post("/mfa/verify", {"code": alice.code(secret)})]
    headers = [header for response in responses for header in set_cookie_headers(response)]
    assert len(headers) >= 4  # a new cookie at each step
    for header in headers:
        assert "; HttpOnly" in header, header
        assert re.search(r"SameSite=(Lax|Strict)", header), header


# --------------------------------------------------------------------- SC-17 timeouts


def test_sc17_idle_timeout_is_configurable_and_a_kept_cookie_is_refused(tmp_path, clock):
    app = make_app(tmp_path, clock, SESSION_IDLE_TIMEOUT=300)
    alice = Browser(app, clock)
    alice.login()
    kept = alice.cookie()
    clock.advance(301)
    # A browser that ignores expiry (or a stolen copy of the cookie) gets nothing.
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], kept)
    assert goes_to_login(client.get("/"))
    with app.app_context():
        assert WebSession.select().where(WebSession.user.is_null(False)).count() == 0


def test_sc17_absolute_timeout_applies_to_pending_logins_too(tmp_path, clock):
    app = make_app(tmp_path, clock, SESSION_ABSOLUTE_TIMEOUT=120, MFA_SETUP_TIMEOUT=600)
    set_method(app, "totp")
    alice = Browser(app, clock)
    alice.login()
    clock.advance(60)
    assert alice.get("/mfa/setup").status_code == 200
    clock.advance(61)
    assert goes_to_login(alice.get("/mfa/setup"))


# ------------------------------------------------------ SC-19 sessions after an MFA change


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


# ----------------------------------------- SC-21 changing one's own factor needs proof


def test_sc21_no_request_changes_ones_own_factor_without_password_and_code(
    totp_app, new_browser, clock
):
    """A signed-in user (or someone at their unlocked browser) sends every route every
    method with forged fields and no password: the credential stays as it is."""
    alice = new_browser()
    secret = alice.enrol()
    before = table_dump(totp_app, TotpCredential)
    forged = {
        "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "code": wrong_code(secret, clock),
        "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "action": "remove",
        "mfa_method": "disabled",
        "confirm": "yes",
    }
    sent = 0
    rules = sorted(totp_app.url_map.iter_rules(), key=lambda r: r.endpoint == "auth.logout")
    for rule in rules:
        url = ARGUMENT.sub(lambda m: PLACEHOLDERS[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            alice.get("/")  # a fresh CSRF token of alice's signed-in session
            alice.client.open(url, method=method, data={**forged, "csrf_token": alice.token})
            sent += 1
    assert sent >= 8
    assert table_dump(totp_app, TotpCredential) == before
    assert audit_events(totp_app, "totp_reset") == []
    assert len(audit_events(totp_app, "totp_enrolled")) == 1  # the enrolment above only


# ------------------------------------------------------ SC-10 forged client-side state


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


# ------------------------------------------------------- SC-31 headers, errors and 413


def test_sc31_oversized_form_gets_a_clear_413_page_and_changes_nothing(app, browser):
    browser.get("/login")
    before = table_dump(app, AuditEvent)
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = browser.post("/login", {"username": "alice", "password": "x" * (limit + 1)})
    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "What was sent is too large." in page
    assert "Traceback" not in page and "Request Entity Too Large" not in page
    assert response.headers["Content-Security-Policy"]
    assert table_dump(app, AuditEvent) == before


def test_sc31_oversized_api_request_gets_a_json_413(app):
    with app.app_context():
        token = tokens.create_token(User.get(User.username == "root"), actor="test")
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = app.test_client().delete(
        "/api/v1/users/alice/totp",
        data=b"{" + b" " * limit + b"}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 413
    assert response.get_json() == {"error": "What was sent is too large."}


def test_sc31_https_pages_and_errors_carry_hsts(app):
    client = app.test_client()
    for path in ("/login", "/nowhere", "/admin/mfa"):
        response = client.get(path, base_url="https://mfa.example")
        assert response.headers["Strict-Transport-Security"].startswith("max-age="), path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "TRACE"])
def test_sc31_unexpected_methods_get_a_plain_405_everywhere(app, browser, method):
    for path in ("/login", "/logout", "/mfa/verify", "/admin/mfa"):
        response = browser.client.open(path, method=method)
        page = response.get_data(as_text=True)
        assert response.status_code in (302, 405), (method, path)
        assert "Traceback" not in page and "werkzeug" not in page.lower(), (method, path)


# ------------------------------------------------- SC-27 and SC-30: the policy, audited


def test_sc27_totp_to_disabled_is_audited_and_keeps_credentials(totp_app, new_browser, clock):
    secret = new_browser().enrol("alice")
    admin = new_browser()
    admin_secret = admin.enrol("root")
    assert admin_secret
    admin.get("/admin/mfa")
    admin.post("/admin/mfa", {"mfa_method": "disabled"})
    (change,) = audit_events(totp_app, "mfa_method_changed")[-1:]
    assert (change.actor, change.outcome, change.detail) == ("root", "ok", "totp -> disabled")
    before = credential_secret(totp_app, "alice")
    assert before == secret
    alice = new_browser()
    assert location(alice.login()) == "/"  # password only while Disabled
    set_method(totp_app, "totp")
    # Back on TOTP the same authenticator is asked for, not a new set-up.
    clock.advance(60)
    again = new_browser()
    assert location(again.login()) == "/mfa/verify"
    assert location(again.post("/mfa/verify", {"code": again.code(secret)})) == "/"


def new_audit_rows(app, since: int) -> list[AuditEvent]:
    with app.app_context():
        return list(AuditEvent.select().where(AuditEvent.id > since).order_by(AuditEvent.id))


def last_audit_id(app) -> int:
    with app.app_context():
        row = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
        return row.id if row else 0


def test_sc30_each_event_is_one_utc_record_with_user_ip_and_outcome(totp_app, new_browser, clock):
    secret = new_browser().enrol("alice")
    clock.advance(60)
    alice = new_browser()
    steps = [
        ("wrong password", lambda: alice.login(password="wrong password!"), ("login", "failed")),
        ("password", lambda: alice.login(), ("login", "ok")),
        (
            "wrong code",
            lambda: alice.post("/mfa/verify", {"code": wrong_code(secret, clock)}),
            ("totp", "failed"),
        ),
        ("code", lambda: alice.post("/mfa/verify", {"code": alice.code(secret)}), ("totp", "ok")),
        ("sign-out", alice.logout, ("logout", "ok")),
    ]
    for name, act, expected in steps:
        since = last_audit_id(totp_app)
        act()
        rows = new_audit_rows(totp_app, since)
        assert [(r.event, r.outcome) for r in rows] == [expected], name
        (row,) = rows
        assert (row.username, row.ip) == ("alice", "127.0.0.1"), name
        assert row.at == clock.now(), name  # naive UTC, from the one clock
    # Throttling and the lock are one record each, too.
    for _ in range(4):
        alice.login()
        alice.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    alice.login()
    since = last_audit_id(totp_app)
    alice.post("/mfa/verify", {"code": wrong_code(secret, clock)})  # the 5th failure
    alice.login()
    alice.post("/mfa/verify", {"code": alice.code(secret)})  # must wait: throttled
    events = [(r.event, r.outcome) for r in new_audit_rows(totp_app, since)]
    assert events.count(("totp", "failed")) == 1
    assert events.count(("totp_throttled", "wait")) == 1
