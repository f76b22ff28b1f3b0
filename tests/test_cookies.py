"""web/cookies: the session cookie's flags: HttpOnly, SameSite=Lax, and over HTTPS
Secure with the __Host- prefix (SC-16)."""

from __future__ import annotations

import re

from conftest import PASSWORD, Browser, make_app
from helpers import location


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
