"""web/cookies: the session cookie's flags: HttpOnly, SameSite=Lax, and over HTTPS
Secure with the __Host- prefix (SC-16)."""

from __future__ import annotations

import re

from conftest import PASSWORD, make_app
from helpers import location


def set_cookie_headers(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def test_sc16_cookie_flags(browser):
    response = browser.get("/login")
    header = response.headers["Set-Cookie"]
    assert header.startswith("smfa_session=")
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header


def test_sc16_secure_cookie_uses_host_prefix(tmp_path, clock):
    app = make_app(tmp_path, clock, SESSION_COOKIE_SECURE=True)
    response = app.test_client().get("/login", base_url="https://localhost")
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-smfa_session=")
    assert "Secure" in header and "Path=/" in header and "Domain" not in header
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


# --- SC-16 cookies over HTTPS


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
    header, trusted = sorted(set_cookie_headers(response), reverse=True)
    assert header.startswith("__Host-smfa_session=") and "; Secure" in header
    # The sign-in is complete: the trusted-browser cookie follows the same policy.
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
