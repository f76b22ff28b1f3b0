"""SC-67: with SESSION_COOKIE_DOMAIN, every app behind the gateway receives the session
cookie. What an app can see passes the gateway, but the portal's own pages also need the
host-only binding cookie, which no app is sent; and the session token changes at every
re-authentication and step-up, so a copy taken before one stops working after it."""

from __future__ import annotations

from support.app import PASSWORD
from support.client import Browser
from support.db import audit_rows, sessions_of
from support.gateway import forward_user
from support.pages import location, text

PORTAL = "https://auth.example.test"
DOMAIN = "example.test"
SESSION = "__Secure-smfa_session"  # over HTTPS, shared with the subdomains
BINDING = "__Host-smfa_binding"  # over HTTPS, the portal's host only
NEW_USER = {"username": "mallory"}


class PortalBrowser(Browser):
    """A browser on the portal's host, over HTTPS (the portal behind its TLS proxy)."""

    def get(self, path, **kwargs):
        kwargs.setdefault("base_url", PORTAL)
        return super().get(path, **kwargs)

    def post(self, path, data=None, csrf=True, **kwargs):
        kwargs.setdefault("base_url", PORTAL)
        return super().post(path, data, csrf, **kwargs)

    def held(self, name):
        cookie = self.client.get_cookie(name, domain=DOMAIN if name == SESSION else None)
        if cookie is None and name == BINDING:
            cookie = self.client.get_cookie(name, domain="auth.example.test")
        return cookie.value if cookie else None


def signed_in(app, clock, username="alice"):
    browser = PortalBrowser(app, clock)
    response = browser.login(username)
    assert location(response) == "/", text(response)
    assert browser.held(SESSION) and browser.held(BINDING)
    return browser


def copy_of(app, clock, cookies: dict) -> PortalBrowser:
    """Another person's browser holding copies of `cookies` (name -> value), as a
    browser sends them to the portal."""
    browser = PortalBrowser(app, clock)
    for name, value in cookies.items():
        if name == SESSION:
            browser.client.set_cookie(name, value, domain=DOMAIN)
        else:
            browser.client.set_cookie(name, value, domain="auth.example.test")
    return browser


PORTAL_PAGES = (
    "/",
    "/account/security",
    "/account/password",
    "/account/email",
    "/admin/",
    "/admin/users",
    "/admin/audit",
    "/admin/step-up",
    "/admin/access",
)


def test_sc67_the_domain_cookie_an_app_sees_passes_the_gateway_but_opens_no_portal_page(
    shared_app, clock
):
    root = signed_in(shared_app, clock, "root")
    token = root.held(SESSION)
    assert (
        forward_user(shared_app, f"{SESSION}={token}") == "root"
    )  # what every app is sent works there

    thief = copy_of(shared_app, clock, {SESSION: token})
    for path in PORTAL_PAGES:
        response = thief.get(path)
        assert response.status_code == 302, path
        assert location(response).startswith("/login"), (path, location(response))
    # Not even with the administrator's step-up: the thief cannot make one, nor act.
    response = thief.post("/admin/users/new", NEW_USER)
    assert response.status_code in (302, 400)
    assert "mallory" not in text(root.get("/admin/users"))
    response = thief.get("/login")
    assert response.status_code == 200 and 'name="password"' in text(response)

    # The victim's own browser (both cookies) is untouched, and so is the gateway.
    for path in PORTAL_PAGES:
        assert root.get(path).status_code == 200, path
    assert forward_user(shared_app, f"{SESSION}={token}") == "root"


def test_sc67_the_binding_cookie_is_host_only_httponly_lax_secure_and_prefixed(shared_app, clock):
    browser = PortalBrowser(shared_app, clock)
    browser.get("/login")
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    headers = response.headers.getlist("Set-Cookie")
    (session,) = [h for h in headers if h.startswith(SESSION + "=")]
    (binding,) = [h for h in headers if h.startswith(BINDING + "=")]
    assert f"Domain={DOMAIN}" in session
    assert "Domain=" not in binding and "; Path=/" in binding
    assert "; Secure" in binding and "; HttpOnly" in binding and "SameSite=Lax" in binding
    # Not a copy of the session token, nor something an app could work out from it.
    token = session.split(";")[0].split("=", 1)[1]
    value = binding.split(";")[0].split("=", 1)[1]
    assert len(value) >= 43 and token not in value and value not in token

    # Over plain HTTP (no prefix can be had), the same cookie without a prefix.
    plain = Browser(shared_app, clock)
    plain.get("/login", base_url="http://auth.example.test")
    response = plain.post(
        "/login",
        {"username": "alice", "password": PASSWORD},
        base_url="http://auth.example.test",
    )
    names = {h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie")}
    assert {"smfa_session", "smfa_binding"} <= names


def test_sc67_every_new_token_gets_its_binding_and_sign_out_drops_both(shared_app, clock):
    alice = signed_in(shared_app, clock)
    first = alice.held(SESSION), alice.held(BINDING)
    alice.get("/account/email")
    # The password is proved again (this site sends no mail, so the address is refused
    # after that): a re-authentication, hence a new token and its binding.
    response = alice.post(
        "/account/email", {"current_password": PASSWORD, "email": "alice@example.com"}
    )
    assert "This site sends no mail" in text(response)
    second = alice.held(SESSION), alice.held(BINDING)
    assert second[0] != first[0] and second[1] != first[1]
    assert alice.get("/account/security").status_code == 200  # with its new binding
    # The form on the page keeps working: the CSRF secret stayed with the session.
    response = alice.post(
        "/account/email", {"current_password": PASSWORD, "email": "alice@example.com"}
    )
    assert response.status_code == 200 and "This site sends no mail" in text(response)
    second = alice.held(SESSION), alice.held(BINDING)
    # The old pair (session and binding copied before the re-authentication) is dead.
    old = copy_of(shared_app, clock, {SESSION: first[0], BINDING: first[1]})
    assert location(old.get("/account/security")).startswith("/login")
    assert forward_user(shared_app, f"{SESSION}={first[0]}") is None

    response = alice.post("/logout")
    deleted = {
        h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie") if "Max-Age=0" in h
    }
    assert {SESSION, BINDING} <= deleted
    assert alice.held(SESSION) is None and alice.held(BINDING) is None


def test_sc67_a_binding_of_another_session_or_a_doubled_one_opens_nothing(shared_app, clock):
    alice = signed_in(shared_app, clock)
    bob = signed_in(shared_app, clock, "bob")
    mixed = copy_of(shared_app, clock, {SESSION: alice.held(SESSION), BINDING: bob.held(BINDING)})
    assert location(mixed.get("/account/security")).startswith("/login")
    header = (
        f"{SESSION}={alice.held(SESSION)}; {BINDING}={alice.held(BINDING)}; "
        f"{BINDING}={alice.held(BINDING)}"
    )
    client = shared_app.test_client(use_cookies=False)
    response = client.get("/account/security", base_url=PORTAL, headers={"Cookie": header})
    assert location(response).startswith("/login")


def test_sc67_a_step_up_changes_the_token_so_a_copy_taken_before_it_cannot_act(shared_app, clock):
    root = signed_in(shared_app, clock, "root")
    # Everything an attacker could have copied before the step-up, the binding included.
    before = {SESSION: root.held(SESSION), BINDING: root.held(BINDING)}
    root.get("/admin/step-up")
    response = root.post("/admin/step-up", {"password": PASSWORD})
    assert location(response) == "/admin/users"
    assert root.held(SESSION) != before[SESSION]
    assert root.held(BINDING) != before[BINDING]

    thief = copy_of(shared_app, clock, before)
    response = thief.get("/admin/users/new")
    assert location(response).startswith("/login")
    assert forward_user(shared_app, f"{SESSION}={before[SESSION]}") is None
    # The administrator's own fresh step-up still works with the new cookies.
    assert root.get("/admin/users/new").status_code == 200
    assert forward_user(shared_app, f"{SESSION}={root.held(SESSION)}") == "root"


def test_sc67_without_its_binding_a_person_signs_in_again_and_the_old_session_ends(
    shared_app, clock
):
    alice = signed_in(shared_app, clock)
    old = alice.held(SESSION)
    alice.client.delete_cookie(BINDING, domain="auth.example.test")
    assert alice.held(BINDING) is None
    response = alice.get("/account/security")
    assert location(response) == "/login?next=/account/security"
    page = text(alice.get(location(response)))
    assert "Sign in again to open this page" in page
    assert (
        forward_user(shared_app, f"{SESSION}={old}") == "alice"
    )  # the apps still let her in meanwhile

    response = alice.post(
        "/login?next=/account/security", {"username": "alice", "password": PASSWORD}
    )
    assert location(response) == "/account/security"
    assert alice.get("/account/security").status_code == 200
    assert alice.held(SESSION) != old
    # The session this browser held is over: a copy of it no longer passes anywhere.
    assert forward_user(shared_app, f"{SESSION}={old}") is None
    assert len(sessions_of(shared_app, "alice")) == 1


def test_sc67_sign_out_without_the_binding_still_ends_the_session_for_every_app(shared_app, clock):
    alice = signed_in(shared_app, clock)
    token = alice.held(SESSION)
    alice.client.delete_cookie(BINDING, domain="auth.example.test")
    page = alice.get("/logout?rd=https://wiki.example.test/")
    assert page.status_code == 200 and 'id="confirm-sign-out"' in page.get_data(as_text=True)
    response = alice.post("/logout", {"rd": "https://wiki.example.test/"})
    assert location(response) == "https://wiki.example.test/"
    assert forward_user(shared_app, f"{SESSION}={token}") is None
    assert sessions_of(shared_app, "alice") == []
    assert ("logout", "ok", "alice", None, None) in audit_rows(shared_app, "logout")


def test_sc67_without_a_cookie_domain_the_session_cookie_is_host_only_and_needs_no_binding(
    app, clock
):
    alice = Browser(app, clock)
    alice.get("/login", base_url=PORTAL)
    response = alice.post("/login", {"username": "alice", "password": PASSWORD}, base_url=PORTAL)
    names = {h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie")}
    assert "__Host-smfa_session" in names and BINDING not in names
    assert alice.get("/account/security", base_url=PORTAL).status_code == 200
