"""SC-40, translations: a translated sentence never carries user data into markup
unescaped; a missing translation (or a language we do not ship) falls back to English,
never to an error; and the recovery-codes file speaks the page's language."""

from __future__ import annotations

import re

from flask import render_template_string
from flask_babel import force_locale, gettext
from support.client import Browser

from standalone_mfa.core import messages
from standalone_mfa.core.models import User

HOSTILE = '<script>alert("x")</script>'


def test_sc40_a_translated_sentence_escapes_the_user_data_it_carries(app):
    template = "{% trans name=who %}Signed in as <strong>{{ name }}</strong>{% endtrans %}"
    with app.test_request_context("/", headers={"Accept-Language": "fr"}):
        page = render_template_string(template, who=HOSTILE)
    assert page.startswith("Connecté en tant que <strong>")  # the catalogue's markup
    assert "<script>" not in page and "&lt;script&gt;" in page  # the data, escaped


def test_sc40_a_message_with_user_data_is_escaped_on_the_page(app, clock):
    """Messages of the table are text: filled in, then escaped by the page."""
    with app.test_request_context("/", headers={"Accept-Language": "de"}):
        flashed = messages.text("group_added", name=HOSTILE, group="staff")
        page = render_template_string("<p>{{ m }}</p>", m=flashed)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_sc40_a_missing_translation_falls_back_to_english(app):
    with app.app_context(), force_locale("fr"):
        assert gettext("A sentence no catalogue has.") == "A sentence no catalogue has."
    with app.app_context(), force_locale("it"):  # a language we do not ship
        assert messages.text("signed_out") == "You have signed out."
    response = app.test_client().get("/login", headers={"Accept-Language": "it, pt;q=0.9"})
    assert response.status_code == 200
    assert '<html lang="en">' in response.get_data(as_text=True)


def test_sc40_the_recovery_codes_file_is_in_the_users_language(totp_app, clock):
    with totp_app.app_context():
        User.update(locale="fr").where(User.username == "alice").execute()
    browser = Browser(totp_app, clock)
    browser.login("alice")
    secret = browser.setup_secret()
    browser.post("/mfa/setup", {"code": browser.code(secret)})
    page = browser.page("/mfa/recovery-codes")
    codes = re.findall(r"<code>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</code>", page)
    assert len(codes) == 10
    text = browser.client.get("/mfa/recovery-codes.txt").get_data(as_text=True)
    lines = text.splitlines()
    # The issuer (the authenticator's label) is never translated.
    assert lines[0] == "Codes de secours Standalone MFA pour alice"
    assert "Chaque code ne fonctionne qu'une seule fois" in text
    assert "Each code works once" not in text
    assert [line for line in lines if line in codes] == codes
