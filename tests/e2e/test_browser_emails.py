"""Addresses in a real browser (Chromium, the app under gunicorn, a real SMTP server):
a user asks for a new address after their password, the link arrives at it and, once
its button is pressed, the address is theirs; an administrator sets one on the Users
page after a step-up. axe checks each new page in light and dark mode."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect
from support.app import PASSWORD
from support.browser import (
    Site,
    check_accessible,
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


def test_a_user_changes_their_address_and_confirms_it_from_the_mail(
    site, axe_window, axe_source, smtp
):
    person = axe_window
    account = site.new_account()
    new_address = f"{account.username}.new@example.com"
    person.sign_in(account)
    person.expect_path("/")
    person.goto("/account/security")
    expect(person.page.locator("#email-address")).to_contain_text("No address")
    check_accessible(person, axe_source)

    person.page.get_by_role("link", name="Change your email address").click()
    person.expect_path("/account/email")
    check_accessible(person, axe_source)
    person.page.get_by_label("Your password").fill("not the password")
    person.page.get_by_label("New email address").fill(new_address)
    person.page.get_by_role("button", name="Send the confirmation link").click()
    person.expect_alert("That password is not right.")
    person.page.get_by_label("Your password").fill(PASSWORD)
    person.page.get_by_label("New email address").fill("someone@example.com\nBcc: x@example.com")
    person.page.get_by_role("button", name="Send the confirmation link").click()
    expect(person.page.locator(".field-error")).to_be_visible()
    check_accessible(person, axe_source)  # the page with its error
    person.page.get_by_label("Your password").fill(PASSWORD)
    person.page.get_by_label("New email address").fill(new_address)
    person.page.get_by_role("button", name="Send the confirmation link").click()
    person.expect_path("/account/security")
    person.expect_status("A link to confirm it was sent to")
    expect(person.page.locator("#email-pending")).to_contain_text("(unconfirmed)")
    check_accessible(person, axe_source)

    person.page.get_by_label("Time zone of your mails").fill("Europe/Paris")
    person.page.get_by_role("button", name="Save the time zone").click()
    person.expect_status("Times in your mails are now in Europe/Paris.")

    [mail] = _wait_for_mail(smtp, new_address)
    link = LINK_RE.search(mail.text).group(1)
    person.goto(link)
    expect(person.page.locator("#confirm-address")).to_have_text(new_address)
    check_accessible(person, axe_source)
    person.page.get_by_role("button", name="Confirm this address").click()
    person.expect_path("/account/security")
    person.expect_status(f"Your address is now {new_address}")
    user = site.user(account.username)
    assert (user.email, user.pending_email) == (new_address, None)

    person.goto(link)  # once only
    expect(person.page.locator("#link-problem")).to_contain_text("already used")
    check_accessible(person, axe_source)


def test_an_administrator_sets_an_address_on_the_users_page(site, axe_window, axe_source):
    person = axe_window
    admin = site.new_account(admin=True)
    target = site.new_account()
    person.sign_in(admin)
    person.expect_path("/")
    person.goto(f"/admin/users?q={target.username}")
    person.page.get_by_role("link", name=f"Change email: {target.username}").click()
    person.expect_path(f"/admin/users/{target.username}/email")
    check_accessible(person, axe_source)
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
    check_accessible(person, axe_source)
    assert site.user(target.username).email == address
    person.page.get_by_label("Email address").fill("two@example.com, three@example.com")
    person.page.get_by_role("button", name="Set the address").click()
    expect(person.page.locator(".field-error")).to_be_visible()
    check_accessible(person, axe_source)
    assert site.user(target.username).email == address


def _wait_for_mail(smtp, address, count=1):
    deadline = time.monotonic() + 20
    while len(smtp.to(address)) < count and time.monotonic() < deadline:
        smtp.wait_for(len(smtp.received) + 1, timeout=0.5)
    return smtp.to(address)
