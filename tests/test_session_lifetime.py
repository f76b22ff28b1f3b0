"""Server-side session lifetimes and what survives a transition (SC-14, SC-17)."""

from __future__ import annotations

from standalone_mfa.core.models import WebSession


def test_sc17_idle_timeout_ends_session(browser, clock, app):
    browser.login()
    clock.advance(29 * 60)
    assert browser.get("/").status_code == 200  # activity keeps it alive
    clock.advance(29 * 60)
    assert browser.get("/").status_code == 200
    clock.advance(30 * 60 + 1)
    response = browser.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    with app.app_context():
        assert WebSession.select().where(WebSession.state == "authenticated").count() == 0


def test_sc17_absolute_timeout_ends_even_an_active_session(browser, clock):
    browser.login()
    for _ in range(47):  # busy for 11 h 45 min
        clock.advance(15 * 60)
        assert browser.get("/").status_code == 200
    clock.advance(16 * 60)
    assert browser.get("/").status_code == 302


def test_sc14_csrf_token_from_before_sign_in_is_void_after(browser):
    browser.get("/login")
    old_token = browser.token
    browser.login()
    response = browser.post("/logout", {"csrf_token": old_token})
    assert response.status_code == 400
    assert browser.get("/").status_code == 200  # still signed in
    browser.get("/")
    assert browser.token != old_token
    assert browser.post("/logout").status_code == 302
    assert browser.get("/").status_code == 302
