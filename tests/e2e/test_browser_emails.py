"""Addresses in a real browser (Chromium, the app under gunicorn, a real SMTP server):
a user asks for a new address after their password, the link arrives at it and, once
its button is pressed, the address is theirs; an administrator sets one on the Users
page after a step-up. axe checks each new page in light and dark mode."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect
from support.app import PASSWORD
from support.browser import (
    ACTION_TIMEOUT_MS,
    AXE_JS,
    AXE_RUN_JS,
    UNLABELLED_FIELDS_JS,
    Person,
    Site,
)
from support.smtp import SENDER, SmtpServer

from standalone_mfa.directory.users import find_user

pytestmark = [pytest.mark.browser, pytest.mark.server]

LINK_RE = re.compile(r"(http://[^\s]+/account/email/confirm\?token=[A-Za-z0-9_-]+)")


class MailSite(Site):
    """The browser tests' site, sending its notices through `smtp`."""

    def __init__(self, root, smtp: SmtpServer):
        super().__init__(root)
        with open(self.instance / "config.py", "a") as extra:
            extra.write(
                f"MAIL_SERVER = '127.0.0.1'\nMAIL_PORT = {smtp.port}\n"
                f"MAIL_DEFAULT_SENDER = {SENDER!r}\nMAIL_TIMEOUT = 5\n"
            )

    def user(self, username):
        with self.app.app_context():
            return find_user(username)


@pytest.fixture(scope="module")
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, smtp):
    site = MailSite(tmp_path_factory.mktemp("browser-emails"), smtp)
    site.set_mfa_method("disabled")  # the password alone: these pages are not about codes
    try:
        site.start()
        yield site
    finally:
        site.stop()


@pytest.fixture
def person(site, chromium):
    """One window; it bypasses the CSP only so that axe can be injected inline."""
    context = chromium.new_context(base_url=site.url, bypass_csp=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    yield Person(site, context.new_page())
    context.close()


def accessible(person: Person) -> None:
    """Every field labelled; no serious or critical axe finding, light or dark."""
    page = person.page
    page.wait_for_load_state()
    assert page.evaluate(UNLABELLED_FIELDS_JS) == [], "form fields without a label"
    page.add_script_tag(content=AXE_JS.read_text())
    found = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found[scheme] = page.evaluate(AXE_RUN_JS)
    page.emulate_media(color_scheme="light")
    assert found == {"light": [], "dark": []}, json.dumps(found, indent=1)


def test_a_user_changes_their_address_and_confirms_it_from_the_mail(site, person, smtp):
    account = site.new_account()
    new_address = f"{account.username}.new@example.com"
    person.sign_in(account)
    person.expect_path("/")
    person.goto("/account/security")
    expect(person.page.locator("#email-address")).to_contain_text("No address")
    accessible(person)

    person.page.get_by_role("link", name="Change your email address").click()
    person.expect_path("/account/email")
    accessible(person)
    person.page.get_by_label("Your password").fill("not the password")
    person.page.get_by_label("New email address").fill(new_address)
    person.page.get_by_role("button", name="Send the confirmation link").click()
    person.expect_alert("That password is not right.")
    person.page.get_by_label("Your password").fill(PASSWORD)
    person.page.get_by_label("New email address").fill("someone@example.com\nBcc: x@example.com")
    person.page.get_by_role("button", name="Send the confirmation link").click()
    expect(person.page.locator(".field-error")).to_be_visible()
    accessible(person)  # the page with its error
    person.page.get_by_label("Your password").fill(PASSWORD)
    person.page.get_by_label("New email address").fill(new_address)
    person.page.get_by_role("button", name="Send the confirmation link").click()
    person.expect_path("/account/security")
    person.expect_status("A link to confirm it was sent to")
    expect(person.page.locator("#email-pending")).to_contain_text("(unconfirmed)")
    accessible(person)

    person.page.get_by_label("Time zone of your mails").fill("Europe/Paris")
    person.page.get_by_role("button", name="Save the time zone").click()
    person.expect_status("Times in your mails are now in Europe/Paris.")

    [mail] = _wait_for_mail(smtp, new_address)
    link = LINK_RE.search(mail.text).group(1)
    person.goto(link)
    expect(person.page.locator("#confirm-address")).to_have_text(new_address)
    accessible(person)
    person.page.get_by_role("button", name="Confirm this address").click()
    person.expect_path("/account/security")
    person.expect_status(f"Your address is now {new_address}")
    user = site.user(account.username)
    assert (user.email, user.pending_email) == (new_address, None)

    person.goto(link)  # once only
    expect(person.page.locator("#link-problem")).to_contain_text("already used")
    accessible(person)


def test_an_administrator_sets_an_address_on_the_users_page(site, person):
    admin = site.new_account(admin=True)
    target = site.new_account()
    person.sign_in(admin)
    person.expect_path("/")
    person.goto(f"/admin/users?q={target.username}")
    person.page.get_by_role("link", name=f"Change email: {target.username}").click()
    person.expect_path(f"/admin/users/{target.username}/email")
    accessible(person)
    address = f"{target.username}@example.com"
    for _ in range(2):  # the second time after the step-up it asks for
        person.page.get_by_label("Email address").fill(address)
        person.page.get_by_role("button", name="Set the address").click()
        if not person.page.url.startswith(site.url + "/admin/step-up"):
            break
        person.step_up(admin)
        person.expect_path(f"/admin/users/{target.username}/email")
    person.expect_status(f"The address of {target.username} is now {address}.")
    expect(person.page.locator("#current-email")).to_contain_text(address)
    accessible(person)
    assert site.user(target.username).email == address
    person.page.get_by_label("Email address").fill("two@example.com, three@example.com")
    person.page.get_by_role("button", name="Set the address").click()
    expect(person.page.locator(".field-error")).to_be_visible()
    accessible(person)
    assert site.user(target.username).email == address


def _wait_for_mail(smtp, address, count=1):
    deadline = time.monotonic() + 20
    while len(smtp.to(address)) < count and time.monotonic() < deadline:
        smtp.wait_for(len(smtp.received) + 1, timeout=0.5)
    return smtp.to(address)
