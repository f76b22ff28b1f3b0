"""SC-68: a sibling subdomain (an app under SESSION_COOKIE_DOMAIN, or one that an
attacker controls) can send forms to the portal and plant cookies for the whole domain.
A state-changing request whose `Origin` is not the portal's, or that the browser marks
`Sec-Fetch-Site: same-site` or `cross-site`, is refused with a page that says so
(audited at a capped rate); a request carrying a session or anonymous cookie name twice
is signed out, on the portal and at the gateway."""

from __future__ import annotations

import pytest
from support.app import PASSWORD, make_app
from support.client import Browser
from support.db import audit_rows, sessions_of
from support.gateway import forward_user
from support.pages import csrf_from, location, text
from support.steps import api_token

PORTAL = "https://auth.example.test"
DOMAIN = "example.test"
SESSION = "__Secure-smfa_session"
ANONYMOUS = "__Host-smfa_anon"  # the portal's own: no sibling can set it over HTTPS
BINDING = "__Host-smfa_binding"
REFUSED = "This form was sent from another site"


def portal_browser(app, clock) -> Browser:
    browser = Browser(app, clock)
    browser.get("/login", base_url=PORTAL)
    return browser


def post_login(browser, headers, username="alice"):
    return browser.post(
        "/login", {"username": username, "password": PASSWORD}, base_url=PORTAL, headers=headers
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example.test"},  # a sibling subdomain
        {"Origin": "https://evil.example.test", "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "same-site"},  # a browser that sends no Origin here
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://attacker.example"},
        {"Origin": "null", "Sec-Fetch-Site": "same-site"},  # a sibling's no-referrer page
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},  # a sandboxed frame elsewhere
        {"Origin": "file://"},
        {"Origin": "http://auth.example.test"},  # the portal's name, another scheme
        {"Origin": "https://auth.example.test:8443"},  # another port
        {"Origin": PORTAL, "Sec-Fetch-Site": "same-site"},
    ],
    ids=lambda headers: " ".join(f"{k}={v}" for k, v in headers.items()),
)
def test_sc68_a_form_sent_from_another_origin_is_refused_and_changes_nothing(
    shared_app, clock, headers
):
    browser = portal_browser(shared_app, clock)
    response = post_login(browser, headers)
    assert response.status_code == 403
    assert REFUSED in text(response)
    assert sessions_of(shared_app, "alice") == []
    assert browser.client.get_cookie(SESSION, domain=DOMAIN) is None
    assert audit_rows(shared_app, "login") == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": PORTAL, "Sec-Fetch-Site": "same-origin"},
        {"Origin": PORTAL},
        {"Origin": "HTTPS://AUTH.EXAMPLE.TEST:443"},  # the same origin, spelt otherwise
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # the person's own action (typed, bookmarked)
        # What Chromium sends with the portal's own forms: under the portal's
        # Referrer-Policy: no-referrer, a form's Origin is "null" (Fetch standard).
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "null"},  # an older browser under that policy: the CSRF token decides
        {},  # an older browser: the CSRF token still applies
    ],
    ids=lambda headers: " ".join(f"{k}={v}" for k, v in headers.items()) or "no headers",
)
def test_sc68_a_form_from_the_portal_itself_is_accepted(shared_app, clock, headers):
    browser = portal_browser(shared_app, clock)
    response = post_login(browser, headers)
    assert location(response) == "/", text(response)
    assert len(sessions_of(shared_app, "alice")) == 1


def test_sc68_without_origin_headers_the_csrf_token_is_still_required(shared_app, clock):
    browser = portal_browser(shared_app, clock)
    response = browser.post(
        "/login", {"username": "alice", "password": PASSWORD}, csrf=False, base_url=PORTAL
    )
    assert response.status_code == 400 and sessions_of(shared_app, "alice") == []


def test_sc68_without_a_portal_url_the_origin_must_be_the_request_host(tmp_path, clock):
    app = make_app(tmp_path, clock)
    browser = Browser(app, clock)
    browser.get("/login", base_url="https://mfa.example")
    refused = browser.post(
        "/login",
        {"username": "alice", "password": PASSWORD},
        base_url="https://mfa.example",
        headers={"Origin": "https://other.example"},
    )
    assert refused.status_code == 403 and REFUSED in text(refused)
    accepted = browser.post(
        "/login",
        {"username": "alice", "password": PASSWORD},
        base_url="https://mfa.example",
        headers={"Origin": "https://mfa.example", "Sec-Fetch-Site": "same-origin"},
    )
    assert location(accepted) == "/"


def test_sc68_a_signed_in_persons_forms_are_covered_too(shared_app, clock):
    browser = portal_browser(shared_app, clock)
    assert location(post_login(browser, {})) == "/"
    page = browser.get("/", base_url=PORTAL)
    token = csrf_from(page.get_data(as_text=True))
    response = browser.client.post(
        "/logout",
        data={"csrf_token": token},
        base_url=PORTAL,
        headers={"Origin": "https://evil.example.test", "Sec-Fetch-Site": "same-site"},
    )
    assert response.status_code == 403
    assert len(sessions_of(shared_app, "alice")) == 1  # still signed in


def test_sc68_refusals_are_audited_at_a_capped_rate(shared_app, clock):
    browser = portal_browser(shared_app, clock)
    for _ in range(20):
        assert post_login(browser, {"Sec-Fetch-Site": "same-site"}).status_code == 403
    rows = audit_rows(shared_app, "cross_site_refused")
    assert len(rows) == 1
    (event, outcome, username, actor, detail) = rows[0]
    assert outcome == "refused" and username is None
    assert detail == "POST /login (Sec-Fetch-Site: same-site, Origin: absent)"
    assert PASSWORD not in str(rows)
    clock.advance(61)  # a minute later, one more
    assert post_login(browser, {"Origin": "https://evil.example.test"}).status_code == 403
    assert len(audit_rows(shared_app, "cross_site_refused")) == 2


def test_sc68_the_api_keeps_working_with_its_bearer_token(shared_app):
    token = api_token(shared_app)
    response = shared_app.test_client().post(
        "/api/v1/users/alice/unlock",
        headers={"Authorization": f"Bearer {token}", "Origin": "https://tool.example"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_sc68_login_csrf_with_a_planted_anonymous_cookie_and_its_token_fails(shared_app, clock):
    """The sibling fetches an anonymous cookie and its form token from the portal, plants
    the cookie in the victim's browser and has it post a username and password of the
    sibling's own to the portal, from an older browser that sends neither `Origin` nor
    `Sec-Fetch-Site`."""
    client = shared_app.test_client(use_cookies=False)

    def sign_in_as_bob(base_url, cookie, **headers):
        attacker = Browser(shared_app, clock)
        attacker.get("/login", base_url=base_url)
        return client.post(
            "/login",
            data={"username": "bob", "password": PASSWORD, "csrf_token": attacker.token},
            base_url=base_url,
            headers={"Cookie": cookie(attacker), **headers},
        )

    def anonymous(browser, name=ANONYMOUS):
        return browser.client.get_cookie(name, domain="auth.example.test").value

    # Over HTTPS the anonymous cookie is __Host-: a sibling cannot set it, and the
    # names it can set for the whole domain are not read.
    for name in ("__Secure-smfa_anon", "smfa_anon"):
        response = sign_in_as_bob(PORTAL, lambda a, name=name: f"{name}={anonymous(a)}")
        assert response.status_code == 400, name
    # Over plain HTTP it can (no prefix holds there); with the victim's own beside it,
    # two cookies of one name are nobody's, so the token matches nothing.
    http = "http://auth.example.test"
    victim = Browser(shared_app, clock)
    victim.get("/login", base_url=http)
    own = anonymous(victim, "smfa_anon")
    response = sign_in_as_bob(
        http, lambda a: f"smfa_anon={anonymous(a, 'smfa_anon')}; smfa_anon={own}"
    )
    assert response.status_code == 400
    # A browser that says where the form came from: refused whatever the cookies.
    response = sign_in_as_bob(
        PORTAL, lambda a: f"{ANONYMOUS}={anonymous(a)}", **{"Sec-Fetch-Site": "same-site"}
    )
    assert response.status_code == 403
    assert sessions_of(shared_app, "bob") == []


def test_sc68_two_session_cookies_of_one_name_are_signed_out_on_the_portal_and_the_gateway(
    shared_app, clock
):
    browsers = {}
    for username in ("alice", "bob"):
        browser = portal_browser(shared_app, clock)
        assert location(post_login(browser, {}, username)) == "/"
        browsers[username] = browser
    alice = browsers["alice"].client.get_cookie(SESSION, domain=DOMAIN).value
    bob = browsers["bob"].client.get_cookie(SESSION, domain=DOMAIN).value
    binding = browsers["alice"].client.get_cookie(BINDING, domain="auth.example.test").value
    assert forward_user(shared_app, f"{SESSION}={alice}") == "alice"  # one: as before

    for header in (
        f"{SESSION}={bob}; {SESSION}={alice}",  # a sibling planted bob's before hers
        f"{SESSION}={alice}; {SESSION}={bob}",
        f"{SESSION}={alice}; {SESSION}={alice}",
        f"{SESSION}={alice}; {SESSION}=",
    ):
        assert forward_user(shared_app, header) is None, header
        client = shared_app.test_client(use_cookies=False)
        response = client.get(
            "/", base_url=PORTAL, headers={"Cookie": f"{header}; {BINDING}={binding}"}
        )
        assert location(response) == "/login", header
    # Nothing was ended: each browser on its own is still signed in.
    assert forward_user(shared_app, f"{SESSION}={alice}") == "alice"
    assert forward_user(shared_app, f"{SESSION}={bob}") == "bob"
