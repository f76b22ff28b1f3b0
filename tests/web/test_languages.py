"""Which language a page speaks: saved > `lang` cookie > Accept-Language > default,
only ever one we ship; and the picker on the sign-in page (SC-40)."""

from __future__ import annotations

import re

import pytest
from support.client import Browser
from support.pages import csrf_from, location

from standalone_mfa.core.models import User

LANG_RE = re.compile(r'<html lang="([^"]+)">')


def html_lang(page: str) -> str:
    match = LANG_RE.search(page)
    assert match, "no <html lang>"
    return match.group(1)


def login_page(client, **headers) -> str:
    return client.get("/login", headers=headers).get_data(as_text=True)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("fr", "fr"),
        ("de-DE,de;q=0.9,en;q=0.5", "de"),
        ("es-419", "es"),
        ("ja, zh;q=0.8", "en"),  # none of ours: the default
        ("ja, fr;q=0.5", "fr"),  # the best of ours
        ("", "en"),
        ("*", "en"),
    ],
)
def test_accept_language_picks_one_of_ours_or_the_default(app, accept, expected):
    assert html_lang(login_page(app.test_client(), **{"Accept-Language": accept})) == expected


def test_the_cookie_wins_over_accept_language_and_a_forged_one_is_ignored(app):
    client = app.test_client()
    client.set_cookie("lang", "es")
    assert html_lang(login_page(client, **{"Accept-Language": "de"})) == "es"
    for forged in ("xx", "../../etc/passwd", "fr\r\nSet-Cookie: a=b", "<script>"):
        client.set_cookie("lang", forged)
        assert html_lang(login_page(client, **{"Accept-Language": "de"})) == "de"


def test_the_saved_language_wins_everywhere(app, clock):
    with app.app_context():
        User.update(locale="de").where(User.username == "alice").execute()
    browser = Browser(app, clock)
    browser.client.set_cookie("lang", "fr")
    browser.login("alice")
    page = browser.client.get("/", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert html_lang(page) == "de"
    browser.logout()  # signed out: the cookie again
    assert html_lang(login_page(browser.client, **{"Accept-Language": "es"})) == "fr"


def test_the_picker_works_without_javascript_and_sets_the_cookie(app):
    client = app.test_client()
    page = login_page(client)
    assert 'action="/language"' in page and '<button type="submit">' in page
    for code, name in (("fr", "Français"), ("de", "Deutsch"), ("es", "Español")):
        assert f'<option value="{code}" lang="{code}">{name}</option>' in page
    page = client.get("/login?rd=https%3A%2F%2Fapp.example.com%2F").get_data(as_text=True)
    response = client.post(
        "/language",
        data={"csrf_token": csrf_from(page), "lang": "fr", "next": "/login?rd=x"},
    )
    assert location(response) == "/login?rd=x"  # back where it was
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("lang=fr;") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=31536000" in cookie
    assert html_lang(login_page(client)) == "fr"


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "javascript:x"])
def test_sc40_the_picker_goes_back_only_to_a_page_of_this_site(app, target):
    client = app.test_client()
    page = login_page(client)
    response = client.post(
        "/language", data={"csrf_token": csrf_from(page), "lang": "de", "next": target}
    )
    assert location(response) == "/login"


@pytest.mark.parametrize("value", ["xx", "", "fr-FR" * 10, "en\r\nX: y"])
def test_the_picker_refuses_a_language_we_do_not_ship(app, value):
    client = app.test_client()
    page = login_page(client)
    response = client.post("/language", data={"csrf_token": csrf_from(page), "lang": value})
    assert response.status_code == 302
    assert "Set-Cookie" not in response.headers or "lang=" not in response.headers["Set-Cookie"]


def test_the_picker_needs_its_csrf_token(app):
    response = app.test_client().post("/language", data={"lang": "fr"})
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers or "lang=" not in response.headers.get(
        "Set-Cookie", ""
    )


def test_a_language_saved_on_account_security_wins_and_can_be_given_back(app, clock):
    browser = Browser(app, clock)
    browser.client.set_cookie("lang", "es")
    browser.login("alice")
    page = browser.page("/account/security")
    assert 'name="language"' in page and "Según mi navegador" in page  # the cookie's
    response = browser.post("/account/language", {"language": "de"})
    assert location(response) == "/account/security"
    page = browser.client.get("/account/security").get_data(as_text=True)
    assert html_lang(page) == "de"  # the flash and the page: in German now
    with app.app_context():
        assert User.get(User.username == "alice").locale == "de"
    assert browser.post("/account/language", {"language": ""}).status_code == 302
    assert html_lang(browser.page("/account/security")) == "es"  # the cookie again
    with app.app_context():
        assert User.get(User.username == "alice").locale is None
    from support.db import audit_rows

    assert [r[-1] for r in audit_rows(app, "language_set")] == ["de", "browser"]


@pytest.mark.parametrize("value", ["xx", "fr-FR", "DE", "en\r\n", "<b>"])
def test_sc40_an_unknown_saved_language_is_refused_and_nothing_changes(app, clock, value):
    browser = Browser(app, clock)
    browser.login("alice")
    browser.get("/account/security")
    response = browser.post("/account/language", {"language": value})
    assert location(response) == "/account/security"
    with app.app_context():
        assert User.get(User.username == "alice").locale is None
