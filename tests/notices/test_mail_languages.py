"""Mails speak their user's saved language (SC-40), whoever triggered them and from
wherever they are sent (the sender thread and the CLI have no request): `<html lang>`
says which, a user without one (or with one we do not ship) gets the default,
English, and every kind of notice renders in every language we ship."""

from __future__ import annotations

import threading

import pytest
from flask_babel import force_locale, gettext
from support.app import PASSWORD
from support.client import Browser
from support.paths import TEMPLATES
from support.steps import change_password

from standalone_mfa.core.models import User
from standalone_mfa.notices import mailer, outbox
from standalone_mfa.web import i18n

NEW_PASSWORD = "a new password for alice 2"
SUBJECT = "Your password was changed"
WHAT = (
    "The password of your account was changed. Your other sessions were signed out and "
    "remembered devices were forgotten."
)
# Facts enough for every template's branches.
FACTS = {"ip": None, "left": 1, "days": 14, "failures": 5, "hours": 24}


def set_locale(app, locale, username="alice"):
    with app.app_context():
        User.update(locale=locale).where(User.username == username).execute()


def expected(app, locale: str, english: str) -> str:
    """`english` as the catalogue of `locale` says it (English until it is translated
    and compiled)."""
    with app.app_context(), force_locale(locale):
        return gettext(english)


def test_the_mailer_knows_the_languages_the_pages_offer():
    assert set(mailer.LOCALES) == set(i18n.LOCALES)


def test_a_french_users_mail_is_in_french(mail_app, clock, smtp):
    set_locale(mail_app, "fr")
    browser = Browser(mail_app, clock)
    browser.login()
    change_password(browser, PASSWORD, NEW_PASSWORD)
    [mail] = smtp.wait_for(1)
    subject, what = expected(mail_app, "fr", SUBJECT), expected(mail_app, "fr", WHAT)
    assert mail.message["Subject"] == subject
    assert 'lang="fr"' in mail.html and 'lang="en"' not in mail.html
    for part in (mail.text, mail.html.replace("&#39;", "'")):
        assert what in part
        assert "2026-11-28 12:00 UTC" in part  # the date stays ISO, with its zone
    assert subject == "Votre mot de passe a été changé"  # the catalogue's, compiled
    assert SUBJECT not in mail.text and "Hello" not in mail.text


@pytest.mark.parametrize("locale", [None, "", "xx", "EN"])
def test_a_user_without_a_language_of_ours_gets_english(mail_app, clock, smtp, locale):
    set_locale(mail_app, locale)
    browser = Browser(mail_app, clock)
    browser.login()
    change_password(browser, PASSWORD, NEW_PASSWORD)
    [mail] = smtp.wait_for(1)
    assert mail.message["Subject"] == SUBJECT
    assert 'lang="en"' in mail.html
    assert mail.text.startswith("Hello alice,") and WHAT in mail.text


def test_the_language_is_the_users_not_the_requests(mail_app, clock, smtp):
    """A French page (cookie, Accept-Language) does not make an English user's mail French."""
    browser = Browser(mail_app, clock)
    browser.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr"
    browser.login()
    change_password(browser, PASSWORD, NEW_PASSWORD)
    [mail] = smtp.wait_for(1)
    assert mail.message["Subject"] == SUBJECT and 'lang="en"' in mail.html


@pytest.mark.parametrize("locale", ["en", "fr", "de", "es"])
def test_every_kind_renders_in_every_language_in_a_thread_without_a_request(
    mail_app, clock, locale
):
    set_locale(mail_app, locale)
    made, errors = {}, []

    def render():  # as the sender thread does: an app context, no request
        with mail_app.app_context():
            try:
                alice = User.get(User.username == "alice")
                for kind in sorted(outbox.KINDS):
                    facts = {**FACTS, "link": "https://mfa.example.com/x", "new_address": None}
                    notice = outbox.queue(alice, kind, **facts)
                    made[kind] = mailer.message_for(notice)
            except Exception as exc:  # reported below, with the thread's traceback
                errors.append(exc)

    thread = threading.Thread(target=render)
    thread.start()
    thread.join(30)
    assert errors == []
    assert set(made) == set(outbox.KINDS)
    for kind, message in made.items():
        assert f'<html lang="{locale}">' in message.html, kind
        assert message.subject and "\n" not in message.subject, kind
        assert "{{" not in message.body and "%(" not in message.body, kind
    if locale == "en":  # the plural forms read as before
        assert "You have 1 recovery code left." in made["recovery_code_used"].body
        assert "for 14 days." in made["device_remembered"].body
        assert "within 24 hours." in made["confirm_address"].body
        assert "after 5 wrong codes in a row" in made["second_factor_locked"].body


def test_each_mail_string_is_extracted_as_it_is_looked_up():
    """The pages trim {% trans %} blocks at run time; the mails' blocks are written on
    one line so that the catalogue's msgid is the same whether or not the extractor
    trims too."""

    from babel.messages.extract import extract_from_file

    for path in sorted((TEMPLATES / "mail").iterdir()):
        as_is = [m[1] for m in extract_from_file("jinja2", path, options={})]
        trimmed = [m[1] for m in extract_from_file("jinja2", path, options={"trimmed": "true"})]
        assert as_is == trimmed, path.name
        assert as_is, path.name  # every mail has strings to translate
