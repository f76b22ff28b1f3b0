"""web/cookies: the session cookie's flags: HttpOnly, SameSite=Lax, and over HTTPS
Secure with the __Host- prefix (SC-16); with SESSION_COOKIE_DOMAIN, the session and
anonymous cookies shared with the subdomains (__Secure- over HTTPS), the portal's own
cookies host-only, and HSTS includeSubDomains a setting (SC-36)."""

from __future__ import annotations

import re

import pytest
from support.app import PASSWORD, make_app, test_config
from support.client import Browser
from support.db import set_method, set_remember_days
from support.oath import fresh_code
from support.pages import location

from standalone_mfa import create_app
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.web.session_cookie import _vary_on_cookie


def set_cookie_headers(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def test_sc16_cookie_flags(browser):
    # Before the password, the anonymous session's signed cookie (no row, SC-45)...
    (header,) = set_cookie_headers(browser.get("/login"))
    assert header.startswith("smfa_anon=")
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header
    # ...then the session cookie.
    headers = set_cookie_headers(
        browser.post("/login", {"username": "alice", "password": PASSWORD})
    )
    (header,) = [h for h in headers if h.startswith("smfa_session=")]
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header


def test_sc16_secure_cookie_uses_host_prefix(tmp_path, clock):
    app = make_app(tmp_path, clock, SESSION_COOKIE_SECURE=True)
    browser = Browser(app, clock)
    response = browser.get("/login", base_url="https://localhost")
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-smfa_anon=")
    assert "Secure" in header and "Path=/" in header and "Domain" not in header
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    response = browser.post(
        "/login", {"username": "alice", "password": PASSWORD}, base_url="https://localhost"
    )
    (header,) = [h for h in set_cookie_headers(response) if h.startswith("__Host-smfa_session=")]
    assert "Secure" in header and "Path=/" in header and "Domain" not in header


# --- SC-16 cookies over HTTPS


def test_sc16_served_over_https_the_cookie_is_secure_and_host_prefixed(app, clock):
    """No setting needed: a request that arrived over HTTPS gets a Secure cookie."""
    client = app.test_client()
    response = client.get("/login", base_url="https://mfa.example")
    (header,) = set_cookie_headers(response)
    assert header.startswith("__Host-smfa_anon=")  # the anonymous session: no row (SC-45)
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
    by_name = {h.split("=", 1)[0]: h for h in set_cookie_headers(response)}
    session_cookie = by_name["__Host-smfa_session"]
    assert session_cookie.startswith("__Host-smfa_session=") and "; Secure" in session_cookie
    assert "; HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    anonymous_gone = by_name["__Host-smfa_anon"]
    assert anonymous_gone.startswith("__Host-smfa_anon=;") and "; Secure" in anonymous_gone
    # The sign-in is complete: the trusted-browser cookie follows the same policy.
    trusted = by_name["__Host-smfa_browser"]
    assert trusted.startswith("__Host-smfa_browser=") and "; Secure" in trusted
    assert "; HttpOnly" in trusted and "Path=/" in trusted and "Domain=" not in trusted
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


# --- SC-45: the anonymous session's signed cookie


def test_sc45_anonymous_cookie_is_httponly_lax_and_secure_host_prefixed_over_https(
    tmp_path, clock
):
    app = make_app(tmp_path, clock)
    (header,) = set_cookie_headers(app.test_client().get("/login"))
    assert header.startswith("smfa_anon=")
    assert "; HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Max-Age=1800" in header  # SESSION_IDLE_TIMEOUT
    assert "Secure" not in header

    client = app.test_client()
    response = client.get("/login", base_url="https://mfa.example")
    (header,) = set_cookie_headers(response)
    assert header.startswith("__Host-smfa_anon=")
    assert "; Secure" in header and "; HttpOnly" in header and "SameSite=Lax" in header
    assert "Path=/" in header and "Domain=" not in header
    # One set over plain HTTP (by a man in the middle, say) is not read over HTTPS.
    planted = app.test_client()
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', planted.get("/login").text
    )
    planted_value = planted.get_cookie("smfa_anon").value
    victim = app.test_client()  # holds only the planted cookie
    victim.set_cookie("smfa_anon", planted_value, domain="mfa.example")
    response = victim.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token.group(1)},
        base_url="https://mfa.example",
    )
    assert response.status_code == 400


# --- SC-36: cookies across subdomains (SESSION_COOKIE_DOMAIN), HSTS includeSubDomains

PORTAL = "https://auth.example.com"
SHARED = ("smfa_session",)  # the shared scope: sent to every subdomain
# Host-only on the portal, always: the anonymous session's cookie too (SC-68: no
# sibling subdomain can plant one whose CSRF secret it knows).
PORTAL_ONLY = ("smfa_anon", "smfa_device", "smfa_browser")


class SiteBrowser(Browser):
    """A browser at one origin of the test domain (the portal, unless told)."""

    def __init__(self, app, clock, base_url=PORTAL):
        super().__init__(app, clock)
        self.base_url = base_url

    def get(self, path, **kwargs):
        kwargs.setdefault("base_url", self.base_url)
        return super().get(path, **kwargs)

    def post(self, path, data=None, csrf=True, **kwargs):
        kwargs.setdefault("base_url", self.base_url)
        return super().post(path, data, csrf, **kwargs)


def cookie_headers(responses) -> dict[str, list[dict]]:
    """Every Set-Cookie of `responses`, by name: its value and attributes (lower-case
    names; a flag maps to True)."""
    found: dict[str, list[dict]] = {}
    for response in responses:
        for header in response.headers.getlist("Set-Cookie"):
            pair, *attributes = [part.strip() for part in header.split(";")]
            name, _, value = pair.partition("=")
            parsed = {"value": value}
            for attribute in attributes:
                key, sep, attribute_value = attribute.partition("=")
                parsed[key.lower()] = attribute_value if sep else True
            found.setdefault(name, []).append(parsed)
    return found


def full_sign_in(app, clock, base_url=PORTAL) -> tuple[SiteBrowser, list]:
    """alice sets up TOTP, signs out, then signs in with a code ticking "Remember this
    device": every cookie the app sets is set at least once. The browser and every
    response."""
    set_method(app, "totp")
    set_remember_days(app, 7)
    alice = SiteBrowser(app, clock, base_url)
    responses = [alice.get("/login"), alice.login()]
    secret = alice.setup_secret()
    responses.append(alice.post("/mfa/setup", {"code": alice.code(secret)}))
    responses += [alice.save_recovery_codes(), alice.logout()]
    responses += [alice.get("/login"), alice.login()]
    responses.append(
        alice.post("/mfa/verify", {"code": fresh_code(alice, secret), "remember_device": "y"})
    )
    assert location(responses[-1]) == "/"
    return alice, responses


def sent_to(client, base_url) -> dict[str, str]:
    """The cookies the browser sends to `base_url` (an app behind the gateway there
    receives them all), by name."""
    return dict(client.get("/healthz", base_url=base_url).request.cookies)


def domain_app(tmp_path, clock, domain=".Example.COM", **overrides):
    return make_app(tmp_path, clock, SESSION_COOKIE_DOMAIN=domain, **overrides)


def test_sc36_with_a_domain_over_https_session_and_anonymous_cookies_are_shared_and_secure(
    tmp_path, clock
):
    app = domain_app(tmp_path, clock)
    assert app.config["SESSION_COOKIE_DOMAIN"] == "example.com"  # as browsers compare it
    alice, responses = full_sign_in(app, clock)
    cookies = cookie_headers(responses)
    # The shared ones: the parent domain, every path, __Secure- (__Host- forbids a Domain).
    for base in SHARED:
        assert f"__Host-{base}" not in cookies and base not in cookies
        for header in cookies[f"__Secure-{base}"]:
            assert header["domain"] == "example.com", header
            assert header["path"] == "/"
            assert header["secure"] is True and header["httponly"] is True
            assert header["samesite"] == "Lax"
    # The portal's own: host-only, __Host- prefixed, whatever the setting.
    for base in PORTAL_ONLY:
        assert f"__Secure-{base}" not in cookies and base not in cookies
        for header in cookies[f"__Host-{base}"]:
            assert "domain" not in header, header
            assert header["path"] == "/"
            assert header["secure"] is True and header["httponly"] is True
            assert header["samesite"] == "Lax"
    # So is the binding cookie the portal's pages also ask for (SC-67).
    for header in cookies["__Host-smfa_binding"]:
        assert "domain" not in header and header["path"] == "/"
        assert header["secure"] is True and header["httponly"] is True
    # The browser sends the session to another subdomain (an app behind the gateway)...
    wiki = sent_to(alice.client, "https://wiki.example.com")
    assert (
        wiki["__Secure-smfa_session"]
        == alice.client.get_cookie("__Secure-smfa_session", domain="example.com").value
    )
    # ...but the portal's own cookies stay with the portal.
    assert set(wiki) == {"__Secure-smfa_session"}
    held = {(c.key, c.domain, c.origin_only) for c in alice.client._cookies.values()}
    assert ("__Host-smfa_device", "auth.example.com", True) in held
    assert ("__Host-smfa_browser", "auth.example.com", True) in held
    assert ("__Host-smfa_binding", "auth.example.com", True) in held
    assert ("__Secure-smfa_session", "example.com", False) in held
    # What wiki received opens no page of the portal (it lacks the binding, SC-67).
    page = alice.client.get("/", base_url="https://wiki.example.com").get_data(as_text=True)
    assert 'id="signed-in-user">' not in page
    # Not to a look-alike domain, nor to the parent's parent.
    for elsewhere in ("https://evilexample.com", "https://com"):
        page = alice.client.get("/", base_url=elsewhere).get_data(as_text=True)
        assert 'id="signed-in-user">' not in page, elsewhere


def test_sc36_with_a_domain_over_http_the_cookies_are_shared_but_neither_secure_nor_prefixed(
    tmp_path, clock
):
    app = domain_app(tmp_path, clock, "example.com")
    alice, responses = full_sign_in(app, clock, "http://auth.example.com")
    cookies = cookie_headers(responses)
    assert not [name for name in cookies if name.startswith("__")]
    for base in SHARED:
        for header in cookies[base]:
            assert header["domain"] == "example.com" and header["path"] == "/"
            assert "secure" not in header and header["httponly"] is True
    for base in (*PORTAL_ONLY, "smfa_binding"):
        for header in cookies[base]:
            assert "domain" not in header and "secure" not in header
    assert set(sent_to(alice.client, "http://wiki.example.com")) == {"smfa_session"}


@pytest.mark.parametrize("base_url", [PORTAL, "http://auth.example.com"])
def test_sc36_without_a_domain_every_cookie_is_host_only(app, clock, base_url):
    alice, responses = full_sign_in(app, clock, base_url)
    cookies = cookie_headers(responses)
    assert set(cookies) == {
        ("__Host-" if base_url.startswith("https") else "") + base for base in SHARED + PORTAL_ONLY
    }
    for headers in cookies.values():
        for header in headers:
            assert "domain" not in header and header["path"] == "/", header
    # Another subdomain does not get the session.
    page = alice.client.get("/", base_url=base_url.replace("auth.", "wiki.")).get_data(
        as_text=True
    )
    assert 'id="signed-in-user">' not in page


def test_sc36_under_a_path_prefix_the_shared_cookies_still_cover_every_path(tmp_path, clock):
    """The portal at https://auth.example.com/mfa-app: the session cookie must reach the
    apps' own paths (Path=/); the portal's own cookie keeps the portal's path."""
    app = domain_app(tmp_path, clock, "example.com")
    client = app.test_client()
    portal = PORTAL + "/mfa-app"
    page = client.get("/login", base_url=portal)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    signed_in = client.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        base_url=portal,
    )
    assert location(signed_in) == "/mfa-app/"
    cookies = cookie_headers([page, signed_in])
    for base in SHARED:
        assert {(h["path"], h["domain"]) for h in cookies[f"__Secure-{base}"]} == {
            ("/", "example.com")
        }
    # __Host- needs Path=/: under a prefix, the portal's own cookies are __Secure-.
    (trusted,) = cookies["__Secure-smfa_browser"]
    assert trusted["path"] == "/mfa-app" and "domain" not in trusted
    for anonymous in cookies["__Secure-smfa_anon"]:
        assert anonymous["path"] == "/mfa-app" and "domain" not in anonymous
    (binding,) = cookies["__Secure-smfa_binding"]
    assert binding["path"] == "/mfa-app" and "domain" not in binding
    assert client.get("/", base_url=portal).status_code == 200  # with the binding there
    # Sent on any path of another subdomain.
    assert set(sent_to(client, "https://wiki.example.com/pages")) == {"__Secure-smfa_session"}


def test_sc36_sign_out_deletes_the_shared_cookies_with_the_attributes_they_were_set_with(
    tmp_path, clock
):
    app = domain_app(tmp_path, clock)
    alice, responses = full_sign_in(app, clock)
    set_with = cookie_headers(responses)["__Secure-smfa_session"][-1]
    # The password step moved the anonymous data into the row: its cookie went the
    # same way it came (host-only, the same Path), so the browser dropped it.
    anonymous = cookie_headers(responses)["__Host-smfa_anon"]
    dropped = [h for h in anonymous if h.get("max-age") == "0"]
    assert dropped and all("domain" not in h and h["path"] == "/" for h in dropped)

    alice.get("/")
    signed_out = alice.post("/logout")
    assert location(signed_out) == "/login"
    (deleted,) = cookie_headers([signed_out])["__Secure-smfa_session"]
    assert deleted["value"] == "" and deleted["max-age"] == "0"
    assert deleted["expires"].startswith("Thu, 01 Jan 1970")
    for attribute in ("domain", "path", "secure", "httponly", "samesite"):
        assert deleted[attribute] == set_with[attribute], attribute
    # The browser really dropped it: neither the portal nor another subdomain is signed in.
    held = {c.key for c in alice.client._cookies.values()}
    assert "__Secure-smfa_session" not in held
    assert "__Host-smfa_device" in held  # the remembered device outlives a sign-out
    for origin in (PORTAL, "https://wiki.example.com"):
        page = alice.client.get("/", base_url=origin).get_data(as_text=True)
        assert 'id="signed-in-user">' not in page, origin
    # "You have signed out." waits in the anonymous cookie, the portal's own.
    (flash,) = cookie_headers([signed_out])["__Host-smfa_anon"]
    assert "domain" not in flash and flash["max-age"] == "1800"


def test_sc36_the_session_is_read_only_from_the_cookie_name_of_its_scope(tmp_path, clock):
    app = domain_app(tmp_path, clock, "example.com")
    alice = SiteBrowser(app, clock)
    alice.login()
    token = alice.client.get_cookie("__Secure-smfa_session", domain="example.com").value
    binding = alice.client.get_cookie("__Host-smfa_binding", domain="auth.example.com").value
    for name, honoured in (
        ("__Secure-smfa_session", True),
        ("__Host-smfa_session", False),  # as set before the domain was configured
        ("smfa_session", False),  # as set over plain HTTP
    ):
        other = app.test_client()
        other.set_cookie(name, token, domain="auth.example.com")
        other.set_cookie("__Host-smfa_binding", binding, domain="auth.example.com")
        page = other.get("/", base_url=PORTAL).get_data(as_text=True)
        assert ('id="signed-in-user">alice<' in page) is honoured, name


@pytest.mark.parametrize(
    "value",
    [
        "http://example.com",
        "https://auth.example.com/",
        "example.com:443",
        "example.com/mfa",
        "alice@example.com",
        "127.0.0.1",
        "192.168.1.10",
        "::1",
        "[2001:db8::1]",
        "com",
        ".com",
        "localhost",
        "*.example.com",
        "example..com",
        "example.com.",
        "-example.com",
        "exa mple.com",
        "ex_ample.com",
        "bücher.example",
        "1.2.3",
        "a" * 64 + ".com",
        42,
        True,
    ],
)
def test_sc36_a_bad_cookie_domain_refuses_to_start_naming_the_key(tmp_path, clock, value):
    with pytest.raises(ConfigurationError, match="SESSION_COOKIE_DOMAIN") as refused:
        create_app(test_config(tmp_path, clock, SESSION_COOKIE_DOMAIN=value))
    assert repr(value) in str(refused.value)


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("example.com", "example.com"),
        (".example.com", "example.com"),
        (" Auth.Example.COM ", "auth.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("", None),
        (None, None),
    ],
)
def test_sc36_a_good_cookie_domain_is_kept_as_browsers_compare_it(tmp_path, clock, value, kept):
    app = create_app(test_config(tmp_path, clock, SESSION_COOKIE_DOMAIN=value))
    assert app.config["SESSION_COOKIE_DOMAIN"] == kept


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({}, "max-age=63072000; includeSubDomains"),  # unchanged for existing installs
        ({"HSTS_INCLUDE_SUBDOMAINS": True}, "max-age=63072000; includeSubDomains"),
        ({"HSTS_INCLUDE_SUBDOMAINS": False}, "max-age=63072000"),
    ],
)
def test_sc36_hsts_include_subdomains_is_a_setting(tmp_path, clock, setting, expected):
    app = make_app(tmp_path, clock, **setting)
    client = app.test_client()
    for path in ("/login", "/no-such-page", "/static/style.css"):
        response = client.get(path, base_url=PORTAL)
        assert response.headers["Strict-Transport-Security"] == expected, path
    # Never over plain HTTP (a browser ignores it there, and it would say nothing true).
    assert "Strict-Transport-Security" not in client.get("/login").headers


@pytest.mark.parametrize("value", ["yes", "", None, 2, "false"])
def test_sc36_a_bad_hsts_include_subdomains_refuses_to_start(tmp_path, clock, value):
    with pytest.raises(ConfigurationError, match="HSTS_INCLUDE_SUBDOMAINS must be true or false"):
        create_app(test_config(tmp_path, clock, HSTS_INCLUDE_SUBDOMAINS=value))


def test_vary_names_cookie_once_beside_what_a_view_set(app):
    """Every page's answer depends on the cookie (`Vary: Cookie`, as Flask's own
    sessions add it); a Vary the view set is kept, and Cookie is not named twice."""
    with app.test_request_context("/"):
        plain = app.response_class("x")
        _vary_on_cookie(plain)
        assert plain.headers.getlist("Vary") == ["Cookie"]
        own = app.response_class("x", headers={"Vary": "Accept-Language"})
        _vary_on_cookie(own)
        assert own.headers.getlist("Vary") == ["Accept-Language, Cookie"]
        already = app.response_class("x", headers={"Vary": "cookie"})
        _vary_on_cookie(already)
        assert already.headers.getlist("Vary") == ["cookie"]
