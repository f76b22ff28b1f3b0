"""Who must use MFA in a real browser (the site and Chromium of tests/e2e/conftest.py): the
administrator's new fields on /admin/mfa, "Set up later" and the banner on every
signed-in page, the voluntary set-up it links to; each new page checked with axe in
light and dark."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support.app import PASSWORD
from support.browser import (
    Person,
    check_accessible,
)

from standalone_mfa.directory import groups, settings
from standalone_mfa.directory.users import find_user

pytestmark = [pytest.mark.browser, pytest.mark.server]

BANNER = "#setup-deadline"


def set_policy(site, scope=settings.EVERYONE, names=(), grace=0) -> None:
    with site.app.app_context():
        settings.set_mfa_method("totp", actor="browser-tests")
        settings.set_mfa_scope(scope, names, actor="browser-tests")
        settings.set_mfa_grace_days(grace, actor="browser-tests")


@pytest.fixture
def policy_reset(site):
    """Each test starts from TOTP for everyone, no grace, and leaves it so."""
    set_policy(site)
    yield
    set_policy(site)


def policy_now(site) -> tuple[str, tuple[str, ...], int]:
    with site.app.app_context():
        return settings.mfa_required_for(), settings.mfa_groups(), settings.mfa_grace_days()


def fill_policy(person: Person, *, who: str, names: str, grace: str) -> None:
    person.page.get_by_label(who).check()
    person.page.get_by_label("Groups (comma-separated)").fill(names)
    person.page.get_by_label("Grace period in days").fill(grace)
    person.page.get_by_role("button", name="Save").click()


def test_admin_chooses_groups_and_a_grace_then_a_bad_group_is_refused(
    site, open_window, javascript, policy_reset
):
    admin = site.new_account(admin=True, enrolled=True)
    person = open_window(java_script_enabled=javascript)
    person.sign_in_with_code(admin)
    person.goto("/admin/mfa")
    fill_policy(person, who="Members of chosen groups", names="staff, finance", grace="7")
    person.expect_alert("Confirm it is you, then confirm the change again.")
    person.step_up(admin)
    person.expect_path("/admin/mfa")
    fill_policy(person, who="Members of chosen groups", names="staff, finance", grace="7")
    person.expect_path("/admin/mfa")
    person.expect_status("Required for groups finance,staff")
    person.expect_status("No user is in finance, staff yet")
    assert policy_now(site) == ("groups", ("finance", "staff"), 7)
    # The form shows what is saved.
    expect(person.page.get_by_label("Members of chosen groups")).to_be_checked()
    expect(person.page.get_by_label("Groups (comma-separated)")).to_have_value("finance, staff")
    expect(person.page.get_by_label("Grace period in days")).to_have_value("7")

    fill_policy(person, who="Everyone", names="staff, not a group", grace="3")
    person.expect_alert("Not a group name: not a group.")
    assert policy_now(site) == ("groups", ("finance", "staff"), 7)  # nothing saved
    fill_policy(person, who="Everyone", names="staff", grace="45")
    person.expect_alert("The grace period is 0 to 30 days.")
    assert policy_now(site) == ("groups", ("finance", "staff"), 7)
    changes = [
        e.detail for e in site.audit_events("mfa_scope_changed") if e.actor == admin.username
    ]
    assert changes == ["everyone -> groups finance,staff"]


def test_set_up_later_shows_the_banner_until_the_voluntary_set_up(
    site, open_window, javascript, policy_reset
):
    set_policy(site, grace=3)
    account = site.new_account()
    person = open_window(java_script_enabled=javascript)
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    expect(person.page.locator("#setup-later-help")).to_contain_text("3 days left")
    person.page.locator("#setup-later").click()
    person.expect_path("/")
    person.expect_status("Set up two-factor authentication within 3 days")
    expect(person.page.locator(BANNER)).to_contain_text("3 days left to set it up")
    person.open_account_security()
    expect(person.page.locator(BANNER)).to_contain_text("3 days left to set it up")

    person.page.locator(BANNER).get_by_role("link", name="Set it up now").click()
    person.expect_path("/account/authenticator/first")
    person.page.get_by_label("Your password").fill(PASSWORD)
    person.page.get_by_role("button", name="Continue").click()
    person.expect_path("/account/authenticator/first/new")
    person.read_secret(account)
    person.page.get_by_label("6-digit code from your authenticator app").fill(account.fresh_code())
    person.page.get_by_role("button", name="Confirm and set up").click()
    person.read_recovery_codes(account)
    person.save_recovery_codes()
    person.expect_path("/account/security")
    expect(person.page.locator(BANNER)).to_have_count(0)
    expect(person.page.locator("#mfa-status + p")).to_contain_text(
        "An authenticator app is set up"
    )
    person.sign_out()
    person.sign_in_with_code(account)


def test_an_out_of_scope_user_is_not_asked_and_sees_no_banner(site, open_window, policy_reset):
    account = site.new_account()
    set_policy(site, scope=settings.GROUPS, names=["browser-staff"], grace=0)
    person = open_window()
    person.sign_in(account)
    person.expect_path("/")
    person.expect_signed_in(account)
    expect(person.page.locator(BANNER)).to_have_count(0)
    with site.app.app_context():  # now in the scope, without grace: signed out
        groups.add(find_user(account.username), "browser-staff", actor="browser-tests")
    person.goto("/account/security")
    person.expect_path("/login")
    person.expect_alert("Your administrator now requires Multi-Factor Authentication.")


def test_the_new_pages_are_accessible(site, axe_window, axe_source, policy_reset):
    person = axe_window
    set_policy(site, grace=5)
    account = site.new_account()
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    expect(person.page.locator("#setup-later")).to_be_visible()
    check_accessible(person, axe_source)  # the set-up page with "Set up later"

    person.page.emulate_media(color_scheme="light")
    person.page.locator("#setup-later").click()
    person.expect_path("/")
    expect(person.page.locator(BANNER)).to_be_visible()
    check_accessible(person, axe_source)  # home with the banner and the message

    for path in ("/account/security", "/account/authenticator/first"):
        person.goto(path)
        check_accessible(person, axe_source)
    person.page.get_by_label("Your password").fill(PASSWORD)
    person.page.get_by_role("button", name="Continue").click()
    person.expect_path("/account/authenticator/first/new")
    check_accessible(person, axe_source)

    admin = site.new_account(admin=True, enrolled=True)
    person.page.context.clear_cookies()
    person.sign_in_with_code(admin)
    person.goto("/admin/mfa")
    check_accessible(person, axe_source)  # the new fields
    fill_policy(person, who="Members of chosen groups", names="", grace="0")
    person.step_up(admin)
    fill_policy(person, who="Members of chosen groups", names="", grace="0")
    person.expect_alert("Name at least one group")
    check_accessible(person, axe_source)  # the refused form
