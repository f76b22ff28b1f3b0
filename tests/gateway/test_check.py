"""The gateway's checks, through the app (the test client plays the proxy): who is let
through, who is sent to sign in and how they come back, who is refused, and that a
check makes no session, writes nothing that is not due, and sees a revoked session at
once (SC-32 … SC-35)."""

from __future__ import annotations

import functools
from urllib.parse import quote

from support.app import PASSWORD, make_app
from support.db import audit_rows, sessions_of
from support.gateway import (
    CONTINUE_BUTTON,
    PORTAL,
    ask_forward,
    ask_nginx,
    continue_to_second_factor,
    portal_rd,
    signed_in_at_portal,
)
from support.pages import location
from support.steps import api_token, give_credential

from standalone_mfa.core.models import User, WebSession
from standalone_mfa.directory import settings

# --- The answers


def test_signed_in_user_passes_with_her_name_and_groups(gateway_app, portal):
    alice = signed_in_at_portal(portal)
    response = ask_nginx(gateway_app, "http://wiki.example.test/page", alice.session_token())
    assert response.status_code == 200
    assert response.headers["Remote-User"] == "alice"
    assert response.headers["Remote-Groups"] == "staff,wiki-editors"
    assert response.get_data() == b""
    forwarded = ask_forward(gateway_app, "http://wiki.example.test/page", alice.session_token())
    assert forwarded.status_code == 200 and forwarded.headers["Remote-User"] == "alice"


def test_nobody_signed_in_is_sent_to_the_portal_with_rd(gateway_app):
    url = "https://wiki.example.test/page?a=1&b=2"
    response = ask_nginx(gateway_app, url)
    assert response.status_code == 401 and "Remote-User" not in response.headers
    assert portal_rd(response) == url  # whole, query included: it was escaped
    assert quote(url, safe="") in response.headers["Location"]
    for method, status in (("GET", 302), ("HEAD", 302), ("POST", 303), ("DELETE", 303)):
        response = ask_forward(gateway_app, url, method=method)
        assert response.status_code == status, method
        assert portal_rd(response) == url


def test_bypass_needs_nobody_and_names_nobody(gateway_app, portal):
    for token in (None, signed_in_at_portal(portal).session_token()):
        response = ask_nginx(gateway_app, "https://public.example.test/", token)
        assert response.status_code == 200
        assert "Remote-User" not in response.headers and "Remote-Groups" not in response.headers


def test_deny_is_403_for_everyone_not_a_sign_in_loop(gateway_app, portal):
    for token in (None, signed_in_at_portal(portal).session_token()):
        assert (
            ask_nginx(gateway_app, "https://wiki.example.test/private/x", token).status_code == 403
        )
        assert (
            ask_forward(gateway_app, "https://wiki.example.test/private/x", token).status_code
            == 403
        )


def test_sc34_no_rule_means_the_default_policy_deny(gateway_app, portal):
    token = signed_in_at_portal(portal).session_token()
    for url in ("https://other.example.org/", "https://example.test.evil.org/"):
        assert ask_nginx(gateway_app, url, token).status_code == 403


def test_group_rules(gateway_app, portal):
    alice, bob = signed_in_at_portal(portal, "alice"), signed_in_at_portal(portal, "bob")
    assert (
        ask_nginx(gateway_app, "https://staff.example.test/", alice.session_token()).status_code
        == 200
    )
    assert (
        ask_nginx(gateway_app, "https://staff.example.test/", bob.session_token()).status_code
        == 403
    )
    # Nobody signed in: the rule names a group, so sign in first.
    assert ask_nginx(gateway_app, "https://staff.example.test/").status_code == 401


def test_sc34_malformed_requests_are_refused_never_allowed(tmp_path, clock):
    # Even where every request would be let through, a check that does not say what
    # was asked for is refused.
    app = make_app(
        tmp_path,
        clock,
        ACCESS_CONTROL={"default_policy": "bypass", "rules": []},
        GATEWAY_PORTAL_URL=PORTAL,
    )
    client = app.test_client(use_cookies=False)
    assert client.get("/auth/nginx").status_code == 403
    assert (
        client.get(
            "/auth/nginx", headers={"X-Original-URL": "/relative", "X-Original-Method": "GET"}
        ).status_code
        == 403
    )
    assert client.get("/auth/forward", headers={"X-Forwarded-Uri": "/"}).status_code == 403
    assert ask_nginx(app, "https://any.example.test/").status_code == 200


def test_other_methods_on_the_checks_are_answered_not_500(gateway_app):
    client = gateway_app.test_client(use_cookies=False)
    for path in ("/auth/nginx", "/auth/forward"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = client.open(path, method=method)
            assert response.status_code == 405, (method, path)
        assert client.options(path).status_code == 200


def test_sc32_a_client_cannot_name_itself(gateway_app, portal):
    """What a client adds to its request (its own Remote-User, X-Forwarded-*) changes
    nothing: the check reads the identity from the session only, and nginx's check
    the URL from X-Original-URL only."""
    bob = signed_in_at_portal(portal, "bob")
    response = ask_nginx(
        gateway_app,
        "https://staff.example.test/",
        bob.session_token(),
        **{
            "Remote-User": "alice",
            "Remote-Groups": "staff",
            "X-Forwarded-Host": "wiki.example.test",
        },
    )
    assert response.status_code == 403
    response = ask_nginx(
        gateway_app, "https://wiki.example.test/", None, **{"Remote-User": "alice"}
    )
    assert response.status_code == 401 and "Remote-User" not in response.headers


# --- Coming back, and the factor


def test_sign_in_with_rd_lands_back_on_the_app(gateway_app, portal):
    browser = portal()
    url = "https://wiki.example.test/page?x=1"
    path = "/login?rd=" + quote(url, safe="")
    browser.get(path)
    response = browser.post(path, {"username": "alice", "password": PASSWORD})
    assert location(response) == url
    assert ask_nginx(gateway_app, url, browser.session_token()).status_code == 200


def test_sc33_rd_elsewhere_is_ignored_through_sign_in(gateway_app, portal):
    browser = portal()
    for bad in (
        "https://evil.org/",
        "https://example.test.evil.org/",
        "https://example.test@evil.org/",
    ):
        path = "/login?rd=" + quote(bad, safe="")
        browser.get(path)
        response = browser.post(path, {"username": "alice", "password": PASSWORD})
        assert location(response) == "/", bad
        assert location(browser.get(path)) == "/", bad
        browser.logout()


def test_sc33_rd_through_every_step_of_a_totp_sign_in(gateway_app, portal, clock):
    with gateway_app.app_context():
        settings.set_mfa_method("totp", actor="test")
    url = "https://wiki.example.test/after"
    browser = portal()
    path = "/login?rd=" + quote(url, safe="")
    browser.get(path)
    assert (
        location(browser.post(path, {"username": "alice", "password": PASSWORD})) == "/mfa/setup"
    )
    secret = browser.setup_secret()
    assert (
        location(browser.post("/mfa/setup", {"code": browser.code(secret)}))
        == "/mfa/recovery-codes"
    )
    browser.page("/mfa/recovery-codes")
    assert location(browser.post("/mfa/recovery-codes")) == url
    browser.logout()
    clock.advance(30)
    browser.get(path)
    assert (
        location(browser.post(path, {"username": "alice", "password": PASSWORD})) == "/mfa/verify"
    )
    browser.get("/mfa/verify")
    assert location(browser.post("/mfa/verify", {"code": browser.code(secret)})) == url
    # Signed in with both factors: straight back to any app, no form.
    other = "https://other.example.test/"
    assert location(browser.get("/login?rd=" + quote(other, safe=""))) == other


def test_sc35_two_factor_rule_takes_a_password_only_session_through_the_code(
    gateway_app, portal, clock
):
    """The site-wide method is Disabled: alice signs in with her password alone. A
    two_factor app sends her back to the portal, which asks for the code (set-up the
    first time) and returns her there; one_factor apps let her through meanwhile."""
    vault = "https://vault.example.test/secrets"
    alice = signed_in_at_portal(portal)
    assert (
        ask_nginx(gateway_app, "https://wiki.example.test/", alice.session_token()).status_code
        == 200
    )
    response = ask_nginx(gateway_app, vault, alice.session_token())
    assert response.status_code == 401
    assert location(continue_to_second_factor(alice, portal_rd(response))) == "/mfa/setup"
    secret = alice.setup_secret()
    alice.post("/mfa/setup", {"code": alice.code(secret)})
    alice.page("/mfa/recovery-codes")
    assert location(alice.post("/mfa/recovery-codes")) == vault
    passed = ask_nginx(gateway_app, vault, alice.session_token())
    assert passed.status_code == 200 and passed.headers["Remote-User"] == "alice"

    # Next time, with an authenticator: the code step, and back.
    alice.logout()
    clock.advance(30)
    alice = signed_in_at_portal(portal)
    assert ask_nginx(gateway_app, vault, alice.session_token()).status_code == 401
    assert location(continue_to_second_factor(alice, vault)) == "/mfa/verify"
    alice.get("/mfa/verify")
    assert location(alice.post("/mfa/verify", {"code": alice.code(secret)})) == vault
    assert ask_nginx(gateway_app, vault, alice.session_token()).status_code == 200
    assert ("second_factor_required", "ok", "alice") in {r[:3] for r in audit_rows(gateway_app)}


def test_sc70_a_link_to_login_never_moves_a_signed_in_session_without_a_click(gateway_app, portal):
    """A cross-site link (or image) to /login?rd=… must not take a password-only
    session into the code step, which would end it if abandoned: the page asks, and
    only its button (a POST with its CSRF token) does it."""
    vault = "https://vault.example.test/secrets"
    alice = signed_in_at_portal(portal)
    before = sessions_of(gateway_app, "alice")
    head = functools.partial(alice.client.head, base_url="http://auth.example.test")
    for method in (alice.get, head):
        response = method("/login?rd=" + quote(vault, safe=""))
        assert response.status_code == 200
    page = alice.page("/login?rd=" + quote(vault, safe=""))
    assert CONTINUE_BUTTON in page and "vault.example.test" in page
    assert [s.state for s in sessions_of(gateway_app, "alice")] == [s.state for s in before]
    assert "second_factor_required" not in {r[0] for r in audit_rows(gateway_app)}
    # A forged POST without the page's token changes nothing either.
    forged = alice.post("/login?rd=" + quote(vault, safe=""), {}, csrf=False)
    assert forged.status_code == 400
    assert [s.state for s in sessions_of(gateway_app, "alice")] == [s.state for s in before]
    # The person's click: on to the set-up (no authenticator yet).
    assert location(alice.post("/login?rd=" + quote(vault, safe=""))) == "/mfa/setup"
    # A path of the portal itself is no protected app: straight there.
    other = signed_in_at_portal(portal, "bob")
    assert location(other.get("/login?next=/account/security")) == "/account/security"


def test_sc35_a_session_not_past_every_step_is_not_signed_in(gateway_app, portal):
    with gateway_app.app_context():
        settings.set_mfa_method("totp", actor="test")
    browser = portal()
    browser.login()  # password only: now at the set-up step
    assert browser.session_token()
    assert (
        ask_nginx(gateway_app, "https://wiki.example.test/", browser.session_token()).status_code
        == 401
    )


def test_sc35_password_only_session_is_refused_once_totp_is_required(gateway_app, portal):
    alice = signed_in_at_portal(portal)
    with gateway_app.app_context():
        settings.set_mfa_method("totp", actor="test")
    assert (
        ask_nginx(gateway_app, "https://wiki.example.test/", alice.session_token()).status_code
        == 401
    )


# --- Revocation and sign-out


def test_sc35_sign_out_ends_access_to_every_app_at_once(gateway_app, portal):
    alice = signed_in_at_portal(portal)
    token = alice.session_token()
    assert ask_nginx(gateway_app, "https://wiki.example.test/", token).status_code == 200
    alice.get("/")
    response = alice.post("/logout", {"rd": "https://wiki.example.test/"})
    assert location(response) == "https://wiki.example.test/"
    for url in ("https://wiki.example.test/", "https://app.example.test/"):
        assert ask_nginx(gateway_app, url, token).status_code == 401


def test_sign_out_link_from_an_app_asks_then_returns(gateway_app, portal):
    alice = signed_in_at_portal(portal)
    page = alice.page("/logout?rd=" + quote("https://wiki.example.test/", safe=""))
    assert 'name="rd" value="https://wiki.example.test/"' in page
    assert alice.session_token() and sessions_of(gateway_app, "alice")
    assert location(alice.post("/logout", {"rd": "https://evil.org/"})) == "/login"
    assert sessions_of(gateway_app, "alice") == []


def test_sc35_reset_and_ending_other_sessions_refuse_the_next_check(gateway_app, portal, clock):
    first, second, third = (
        signed_in_at_portal(portal),
        signed_in_at_portal(portal),
        signed_in_at_portal(portal),
    )
    url = "https://wiki.example.test/"
    first.get("/account/security")
    first.post("/account/sessions/end-others")
    assert ask_nginx(gateway_app, url, second.session_token()).status_code == 401
    assert ask_nginx(gateway_app, url, third.session_token()).status_code == 401
    assert ask_nginx(gateway_app, url, first.session_token()).status_code == 200
    # An administrator's reset (of the authenticator she has) through the API ends the rest.
    give_credential(gateway_app, clock, "alice")
    assert ask_nginx(gateway_app, url, first.session_token()).status_code == 200
    token = api_token(gateway_app)
    client = gateway_app.test_client()
    response = client.delete(
        "/api/v1/users/alice/totp", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 204
    assert ask_nginx(gateway_app, url, first.session_token()).status_code == 401


def test_sc36_the_check_reads_the_prefixed_cookie_over_https(gateway_app, portal):
    alice = signed_in_at_portal(portal)
    client = gateway_app.test_client(use_cookies=False)
    headers = {"X-Original-URL": "https://wiki.example.test/", "X-Original-Method": "GET"}
    plain = client.get(
        "/auth/nginx", headers={**headers, "Cookie": f"smfa_session={alice.session_token()}"}
    )
    assert plain.status_code == 401  # over HTTPS only the __Secure- cookie counts
    prefixed = client.get(
        "/auth/nginx",
        headers={**headers, "Cookie": f"__Secure-smfa_session={alice.session_token()}"},
    )
    assert prefixed.status_code == 200


# --- What a check writes


def test_a_check_makes_no_session_and_sets_no_cookie(gateway_app):
    for _ in range(50):
        response = ask_nginx(gateway_app, "https://wiki.example.test/")
        assert "Set-Cookie" not in response.headers
        response = ask_nginx(gateway_app, "https://wiki.example.test/", token="made-up")
        assert "Set-Cookie" not in response.headers
    with gateway_app.app_context():
        assert WebSession.select().count() == 0


def test_checks_keep_the_session_alive_writing_at_most_once_a_minute(gateway_app, portal, clock):
    alice = signed_in_at_portal(portal)
    token = alice.session_token()

    def last_seen():
        with gateway_app.app_context():
            return WebSession.get(
                WebSession.user == User.get(User.username == "alice")
            ).last_seen_at

    before = last_seen()
    clock.advance(30)
    ask_nginx(gateway_app, "https://wiki.example.test/", token)
    assert last_seen() == before  # not due yet
    clock.advance(31)
    ask_nginx(gateway_app, "https://wiki.example.test/", token)
    assert last_seen() > before
    # Idle past the timeout (checks are use; no checks is idleness): refused.
    clock.advance(gateway_app.config["SESSION_IDLE_TIMEOUT"] + 1)
    assert ask_nginx(gateway_app, "https://wiki.example.test/", token).status_code == 401


def test_denials_are_audited_with_user_domain_and_path_at_most_once_a_minute(
    gateway_app, portal, monkeypatch
):
    bob = signed_in_at_portal(portal, "bob")
    for _ in range(20):
        assert (
            ask_nginx(gateway_app, "https://staff.example.test/x", bob.session_token()).status_code
            == 403
        )
    rows = [r for r in audit_rows(gateway_app) if r[0] == "gateway_denied"]
    assert len(rows) == 1
    assert (
        rows[0][2] == "bob" and "staff.example.test/x" in rows[0][-1] and "rule 4" in rows[0][-1]
    )
    # Allowed checks and sign-in redirects write no audit row.
    count = len(audit_rows(gateway_app))
    alice = signed_in_at_portal(portal)
    count = len(audit_rows(gateway_app))
    for _ in range(10):
        ask_nginx(gateway_app, "https://wiki.example.test/", alice.session_token())
        ask_nginx(gateway_app, "https://wiki.example.test/")
    assert len(audit_rows(gateway_app)) == count


# --- The admin page


def test_access_rules_page_shows_the_rules_and_tests_a_url(gateway_app, portal):
    root = signed_in_at_portal(portal, "root")
    page = root.page("/admin/access")
    assert 'id="access-rules"' in page and "vault.example.test" in page and "group:staff" in page
    page = root.page(
        "/admin/access?url=" + quote("https://staff.example.test/x") + "&method=GET&username=alice"
    )
    result = page[page.index('id="access-result"') :]
    assert "Sent to sign in" in result and "rule 3" in result and "Let through" in result
    page = root.page(
        "/admin/access?url=" + quote("https://staff.example.test/x") + "&username=bob"
    )
    assert "Refused (403)" in page[page.index('id="access-result"') :]
    assert "Enter a whole http" in root.page("/admin/access?url=ftp%3A%2F%2Fx&method=GET")
    assert "There is no user" in root.page(
        "/admin/access?url=https%3A%2F%2Fa.example.test%2F&username=nobody"
    )
    # Not for others.
    assert signed_in_at_portal(portal, "bob").get("/admin/access").status_code == 403


def test_a_misconfigured_proxy_or_portal_is_named_in_the_log(
    gateway_app, portal, caplog, monkeypatch
):
    from standalone_mfa.web import gateway

    caplog.set_level("WARNING", logger="standalone_mfa")
    gateway_app.test_client(use_cookies=False).get("/auth/nginx")
    assert "X-Original-URL is missing" in caplog.text
    # A plain cookie on an HTTPS app: the portal thought it was on plain HTTP.
    monkeypatch.setattr(gateway, "_last_warning", [float("-inf")])
    token = signed_in_at_portal(portal).session_token()
    response = gateway_app.test_client(use_cookies=False).get(
        "/auth/nginx",
        headers={
            "X-Original-URL": "https://wiki.example.test/",
            "X-Original-Method": "GET",
            "Cookie": f"smfa_session={token}",
        },
    )
    assert response.status_code == 401
    assert "PROXY_FIX_X_PROTO" in caplog.text
    assert token not in caplog.text


def test_the_csp_lets_forms_lead_back_to_the_apps_and_nowhere_else(gateway_app):
    """Browsers apply form-action to where a form's answer redirects: the last sign-in
    step and the sign-out lead to `rd` on the cookie domain, and only there."""
    shared = gateway_app.test_client().get("/login").headers["Content-Security-Policy"]
    assert "form-action 'self' https://example.test:* https://*.example.test:*" in shared
    from standalone_mfa.web.errors import content_security_policy

    assert "form-action 'self';" in content_security_policy(None)


def test_checks_are_counted_by_decision_in_the_metrics(gateway_app, portal):
    """Allowed checks and sign-in redirects are counted, not audited (SC-39's metrics)."""
    from prometheus_client import REGISTRY

    def counts():
        return {
            d: REGISTRY.get_sample_value("smfa_gateway_checks_total", {"decision": d}) or 0
            for d in ("allow", "deny", "sign_in")
        }

    before = counts()
    token = signed_in_at_portal(portal).session_token()
    for _ in range(3):
        ask_nginx(gateway_app, "https://wiki.example.test/", token)
    ask_nginx(gateway_app, "https://wiki.example.test/")
    ask_forward(gateway_app, "https://wiki.example.test/private/x", token)
    gateway_app.test_client(use_cookies=False).get("/auth/nginx")  # malformed: refused
    after = counts()
    assert {d: after[d] - before[d] for d in after} == {"allow": 3, "deny": 2, "sign_in": 1}


def test_sc35_a_password_change_refuses_the_other_sessions_next_check(gateway_app, portal):
    """The user changes her password in one browser: the checks of her other browsers
    are refused at once; the browser that changed it keeps passing."""
    changing, other = signed_in_at_portal(portal), signed_in_at_portal(portal)
    url = "https://wiki.example.test/"
    assert ask_nginx(gateway_app, url, other.session_token()).status_code == 200
    changing.get("/account/password")
    new = "a brand new passphrase"
    response = changing.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert location(response) == "/account/security"
    assert ask_nginx(gateway_app, url, other.session_token()).status_code == 401
    assert ask_nginx(gateway_app, url, changing.session_token()).status_code == 200
