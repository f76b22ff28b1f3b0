"""Who must use MFA (signin.policy): everyone or the members of chosen groups, a grace
period kept on the server, "Set up later" and its banner, a voluntary set-up from
Account security, the administrator's fields and CLI, and their audit rows. The
guard and the gateway follow the same decision as the sign-in branch."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from support.app import PASSWORD, START, make_app
from support.client import Browser, cli, signed_in_as
from support.db import audit_rows
from support.gateway import (
    PortalBrowser,
    ask_nginx,
    continue_to_second_factor,
    make_gateway_app,
    portal_rd,
)
from support.oath import wrong_code
from support.pages import admin_messages, goes_to_login, location, text
from support.steps import signed_in_admin, step_up

from standalone_mfa.accounts import reset
from standalone_mfa.core.db import db
from standalone_mfa.core.models import User
from standalone_mfa.directory import groups, settings
from standalone_mfa.signin import policy

DAY = 24 * 3600
LATER_BUTTON = 'id="setup-later"'


def configure(app, method="totp", scope=settings.EVERYONE, names=(), grace=0):
    with app.app_context():
        settings.set_mfa_method(method, actor="test")
        settings.set_mfa_scope(scope, names, actor="test")
        settings.set_mfa_grace_days(grace, actor="test")


def join(app, username, group):
    with app.app_context():
        groups.add(User.get(User.username == username), group, actor="test")


def leave(app, username, group):
    with app.app_context():
        groups.remove(User.get(User.username == username), group, actor="test")


def user(app, username="alice") -> User:
    with app.app_context():
        return User.get(User.username == username)


def banner(page: str) -> str | None:
    match = re.search(r'<div class="banner" id="setup-deadline"[^>]*>(.*?)</div>', page, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split()) if match else None


def postpone(browser):
    """Press "Set up later" on the set-up page (with its own CSRF token)."""
    page = browser.page("/mfa/setup")
    assert LATER_BUTTON in page
    return browser.post("/mfa/setup/later")


# --- The decision itself (pure) ------------------------------------------------------

EVERYONE = policy.Policy(settings.TOTP, settings.EVERYONE, frozenset(), 0)
STAFF_7 = policy.Policy(settings.TOTP, settings.GROUPS, frozenset({"staff"}), 7)


@pytest.mark.parametrize(
    ("rules", "facts", "outcome", "deadline"),
    [
        (policy.Policy(), {"enrolled": True}, policy.METHOD_OFF, None),
        (EVERYONE, {}, policy.SET_UP, START),  # no grace: set up at once
        (EVERYONE, {"enrolled": True}, policy.CODE, None),
        (STAFF_7, {"user_groups": ("staff",)}, policy.POSTPONABLE, START + dt.timedelta(7)),
        (STAFF_7, {"user_groups": ("sales",)}, policy.NOT_REQUIRED, None),
        # Outside the scope with an authenticator (a voluntary set-up): a code all the same.
        (STAFF_7, {"user_groups": (), "enrolled": True}, policy.CODE, None),
        # A deadline kept from an earlier sign-in counts, not a new grace from now.
        (
            STAFF_7,
            {
                "user_groups": ("staff",),
                "required_since": START - dt.timedelta(3),
                "deadline": START + dt.timedelta(4),
            },
            policy.POSTPONABLE,
            START + dt.timedelta(4),
        ),
        (
            STAFF_7,
            {
                "user_groups": ("staff",),
                "required_since": START - dt.timedelta(9),
                "deadline": START - dt.timedelta(2),
            },
            policy.SET_UP,
            START - dt.timedelta(2),
        ),
        # A grace shortened since (7 -> 1 day) counts before any row is updated.
        (
            policy.Policy(settings.TOTP, settings.EVERYONE, frozenset(), 1),
            {"required_since": START - dt.timedelta(2), "deadline": START + dt.timedelta(5)},
            policy.SET_UP,
            START - dt.timedelta(1),
        ),
        # After an administrator's reset: no grace.
        (STAFF_7, {"user_groups": ("staff",), "reset": True}, policy.SET_UP, None),
    ],
)
def test_the_decision(rules, facts, outcome, deadline):
    facts = {"user_groups": (), "enrolled": False, **facts}
    decided = policy.decide(rules, at=START, **facts)
    assert (decided.outcome, decided.deadline) == (outcome, deadline)
    assert decided.password_alone == (
        outcome in (policy.METHOD_OFF, policy.NOT_REQUIRED, policy.POSTPONABLE)
    )


def test_days_left_round_up_to_whole_days():
    left = policy.Requirement(policy.POSTPONABLE, START + dt.timedelta(days=2, hours=1))
    assert left.days_left(START) == 3
    assert left.days_left(START + dt.timedelta(days=2)) == 1  # its last hour: 1 day left
    assert left.days_left(START + dt.timedelta(days=3)) == 0


def test_every_policy_outcome_has_a_branch_at_password_ok():
    from standalone_mfa.signin import state

    assert set(state.POLICY_EVENTS) == set(policy.OUTCOMES)
    for event in state.POLICY_EVENTS.values():
        state.next_state(state.PASSWORD_OK, event)  # allowed by the table


# --- Group scope ---------------------------------------------------------------------


def test_sc13_out_of_scope_user_signs_in_with_the_password_alone_and_stays(app, browser):
    configure(app, scope=settings.GROUPS, names=["staff"])
    join(app, "alice", "staff")
    assert location(browser.login("bob")) == "/"
    assert signed_in_as(browser, "bob")
    assert banner(browser.page("/account/security")) is None  # nothing to set up
    # The guard agrees with the sign-in branch: the password-only session is not ended.
    assert browser.get("/account/security").status_code == 200
    assert ("session_ended", "mfa_required", "bob") not in {r[:3] for r in audit_rows(app)}
    # A member of the group is asked to set up, with no grace here.
    alice = Browser(app, browser.clock)
    assert location(alice.login("alice")) == "/mfa/setup"
    assert LATER_BUTTON not in alice.page("/mfa/setup")


def test_sc13_joining_a_group_ends_a_password_only_session_without_grace(app, browser):
    configure(app, scope=settings.GROUPS, names=["staff"])
    browser.login("bob")
    assert signed_in_as(browser, "bob")
    join(app, "bob", "staff")
    assert goes_to_login(browser.get("/account/security"))
    assert ("session_ended", "mfa_required", "bob") in {r[:3] for r in audit_rows(app)}
    assert location(browser.login("bob")) == "/mfa/setup"


def test_joining_a_group_with_a_grace_keeps_the_session_and_shows_the_banner(app, browser):
    configure(app, scope=settings.GROUPS, names=["staff"], grace=5)
    browser.login("bob")
    join(app, "bob", "staff")
    assert banner(browser.page("/account/security")).startswith(
        "Your administrator requires two-factor authentication: 5 days left to set it up."
    )
    # Kept the first time the requirement is seen (SC-70), not at the next sign-in.
    assert user(app, "bob").mfa_deadline == START + dt.timedelta(days=5)
    browser.logout()
    assert location(browser.login("bob")) == "/mfa/setup"
    assert user(app, "bob").mfa_deadline == START + dt.timedelta(days=5)


LONG_SESSIONS = {"SESSION_IDLE_TIMEOUT": 30 * DAY, "SESSION_ABSOLUTE_TIMEOUT": 365 * DAY}


def test_sc70_a_grace_that_began_while_signed_in_is_kept_and_ends(tmp_path, clock):
    """Signed in outside the scope, then put in it: the grace starts at the first
    request that sees the requirement, is stored, and ends the session when it is over
    (it used to be recounted from "now" at every request: with long sessions, never)."""
    app = make_app(tmp_path, clock, **LONG_SESSIONS)
    browser = Browser(app, clock)
    configure(app, scope=settings.GROUPS, names=["staff"], grace=2)
    browser.login("bob")
    clock.advance(3600)
    join(app, "bob", "staff")
    started = START + dt.timedelta(seconds=3600)
    assert "2 days left" in banner(browser.page("/account/security"))
    assert user(app, "bob").mfa_required_since == started
    assert user(app, "bob").mfa_deadline == started + dt.timedelta(days=2)
    clock.advance(DAY)
    assert "1 day left" in banner(browser.page("/account/security"))
    assert user(app, "bob").mfa_deadline == started + dt.timedelta(days=2)  # not recounted
    clock.advance(DAY)
    assert ended_by_the_guard(app, browser, "bob")
    assert location(browser.login("bob")) == "/mfa/setup"
    assert LATER_BUTTON not in browser.page("/mfa/setup")


def test_leaving_the_group_lifts_the_requirement_and_rejoining_keeps_the_deadline(
    app, browser, clock
):
    """Chosen rule: a deadline is kept until the user sets up. Leaving the scope does
    not forget it, so coming back gives no new grace."""
    configure(app, scope=settings.GROUPS, names=["staff"], grace=3)
    join(app, "alice", "staff")
    browser.login()
    postpone(browser)
    leave(app, "alice", "staff")
    assert banner(browser.page("/account/security")) is None
    browser.logout()
    assert location(browser.login()) == "/"  # out of the scope: the password alone
    browser.logout()

    clock.advance(4 * DAY)
    join(app, "alice", "staff")
    assert location(browser.login()) == "/mfa/setup"
    assert LATER_BUTTON not in browser.page("/mfa/setup")  # the old deadline passed
    assert user(app).mfa_deadline == START + dt.timedelta(days=3)


def test_a_group_rule_needs_one_shared_group_and_unknown_groups_cover_nobody(app, browser):
    configure(app, scope=settings.GROUPS, names=["finance", "staff"])
    join(app, "bob", "finance")
    assert location(browser.login("bob")) == "/mfa/setup"
    alice = Browser(app, browser.clock)
    join(app, "alice", "sales")
    assert location(alice.login("alice")) == "/"


def test_scope_changes_count_at_the_next_request_not_the_next_sign_in(app, browser):
    configure(app, scope=settings.GROUPS, names=["staff"])
    browser.login("bob")
    assert signed_in_as(browser, "bob")
    configure(app, scope=settings.EVERYONE)
    assert goes_to_login(browser.get("/"))


# --- The grace period ----------------------------------------------------------------


def test_sc13_setup_later_within_the_grace_signs_in_and_says_how_many_days(app, browser):
    configure(app, grace=7)
    assert location(browser.login()) == "/mfa/setup"
    page = text(browser.page("/mfa/setup"))
    assert "7 days left" in page
    response = postpone(browser)
    assert location(response) == "/"
    home = browser.page("/")
    assert "Set up two-factor authentication within 7 days" in text(home)
    assert banner(home).startswith(
        "Your administrator requires two-factor authentication: 7 days left"
    )
    assert 'href="/account/authenticator/first"' in home
    assert signed_in_as(browser, "alice")
    row = user(app)
    assert (row.mfa_required_since, row.mfa_deadline) == (START, START + dt.timedelta(days=7))
    assert ("setup_postponed", "ok", "alice", None, "until 2026-12-05 12:00 UTC") in audit_rows(
        app, "setup_postponed"
    )


def test_the_banner_is_on_every_signed_in_page_and_counts_down(app, browser, clock):
    configure(app, grace=2)
    browser.login()
    postpone(browser)
    for path in ("/", "/account/security", "/account/password"):
        assert "2 days left" in banner(browser.page(path))
    browser.logout()
    clock.advance(DAY + 3600)
    browser.login()
    postpone(browser)
    assert banner(browser.page("/")).startswith(
        "Your administrator requires two-factor authentication: 1 day left to set it up."
    )


def test_the_deadline_is_kept_from_the_first_sign_in_that_required_it(app, browser, clock):
    configure(app, grace=7)
    browser.login()
    postpone(browser)
    browser.logout()
    clock.advance(3 * DAY)
    assert location(browser.login()) == "/mfa/setup"
    assert "4 days left" in text(browser.page("/mfa/setup"))
    assert user(app).mfa_deadline == START + dt.timedelta(days=7)


def ended_by_the_guard(app, browser, username="alice") -> bool:
    """The next page is the sign-in, because the guard ended the session (not idle)."""
    before = audit_rows(app, "session_ended")
    return goes_to_login(browser.get("/")) and audit_rows(app, "session_ended")[len(before) :] == [
        ("session_ended", "mfa_required", username, None, None)
    ]


def test_sc13_an_expired_grace_ends_the_session_and_offers_no_later(app, browser, clock):
    configure(app, grace=1)
    browser.login()
    postpone(browser)
    browser.logout()
    clock.advance(DAY - 300)
    browser.login()
    assert "1 day left" in text(browser.page("/mfa/setup"))
    postpone(browser)
    assert signed_in_as(browser, "alice")
    clock.advance(300)
    assert ended_by_the_guard(app, browser)
    assert location(browser.login()) == "/mfa/setup"
    assert LATER_BUTTON not in browser.page("/mfa/setup")
    # A forged "later" is refused: still at the set-up step.
    response = browser.post("/mfa/setup/later")
    assert location(response) == "/mfa/setup"
    assert "can no longer be postponed" in text(browser.page("/mfa/setup"))
    assert len(audit_rows(app, "setup_postponed")) == 2


def test_shortening_the_grace_shortens_pending_deadlines(app, browser, clock):
    configure(app, grace=7)
    browser.login()
    postpone(browser)
    clock.advance(600)
    with app.app_context():
        settings.set_mfa_grace_days(2, actor="root")
    assert user(app).mfa_deadline == START + dt.timedelta(days=2)
    assert (
        "mfa_grace_changed",
        "ok",
        None,
        "root",
        "7 -> 2 days (1 pending deadlines moved)",
    ) in (audit_rows(app, "mfa_grace_changed"))
    assert "2 days left" in banner(browser.page("/"))
    with app.app_context():
        settings.set_mfa_grace_days(0, actor="root")
    assert user(app).mfa_deadline == START
    assert ended_by_the_guard(app, browser)  # past the shortened deadline


def test_a_shortened_grace_counts_at_once_on_the_set_up_page(app, browser):
    configure(app, grace=7)
    browser.login()
    with app.app_context():  # between the password and "Set up later"
        settings.set_mfa_grace_days(0, actor="root")
    assert LATER_BUTTON not in browser.page("/mfa/setup")
    assert location(browser.post("/mfa/setup/later")) == "/mfa/setup"


def test_lengthening_the_grace_never_revives_a_deadline_that_passed(app, new_browser, clock):
    configure(app, grace=1)
    alice = new_browser()
    alice.login("alice")
    postpone(alice)
    clock.advance(2 * DAY)  # alice's deadline passed
    bob = new_browser()
    bob.login("bob")
    postpone(bob)  # bob's is a day away
    with app.app_context():
        settings.set_mfa_grace_days(10, actor="root")
    assert user(app, "alice").mfa_deadline == START + dt.timedelta(days=1)
    assert user(app, "bob").mfa_deadline == START + dt.timedelta(days=12)
    assert location(alice.login("alice")) == "/mfa/setup"
    assert LATER_BUTTON not in alice.page("/mfa/setup")
    assert "10 days left" in banner(bob.page("/"))


def test_setting_up_ends_the_grace_and_then_a_code_is_asked(app, browser, clock):
    configure(app, grace=7)
    secret = browser.enrol()
    row = user(app)
    assert (row.mfa_required_since, row.mfa_deadline) == (None, None)
    assert banner(browser.page("/")) is None
    browser.logout()
    clock.advance(30)
    assert location(browser.login()) == "/mfa/verify"
    assert secret


def test_no_grace_after_an_administrator_reset(app, browser, clock):
    configure(app, grace=7)
    browser.enrol()
    with app.app_context():
        reset.reset_totp(User.get(User.username == "alice"), actor="root")
    clock.advance(30)
    fresh = Browser(app, clock)
    assert location(fresh.login()) == "/mfa/setup"
    assert LATER_BUTTON not in fresh.page("/mfa/setup")
    assert location(fresh.post("/mfa/setup/later")) == "/mfa/setup"


def test_setup_later_needs_its_csrf_token(app, browser):
    configure(app, grace=7)
    browser.login()
    response = browser.post("/mfa/setup/later", {"csrf_token": "forged"})
    assert response.status_code == 400
    assert location(browser.get("/")) == "/mfa/setup"  # still at the set-up step
    assert audit_rows(app, "setup_postponed") == []


# --- The gateway agrees --------------------------------------------------------------


@pytest.fixture
def gateway_app(tmp_path, clock):
    app = make_gateway_app(tmp_path, clock)
    yield app
    with app.app_context():
        db.close()


WIKI = "https://wiki.example.test/"
VAULT = "https://vault.example.test/secrets"


def test_sc35_gateway_lets_out_of_scope_and_postponed_sessions_through_one_factor_apps(
    gateway_app, clock
):
    configure(gateway_app, scope=settings.GROUPS, names=["staff"], grace=2)
    join(gateway_app, "alice", "staff")
    alice = PortalBrowser(gateway_app, clock)
    alice.login("alice")
    postpone(alice)
    alice.logout()
    clock.advance(2 * DAY - 300)
    alice.login("alice")
    postpone(alice)  # the last minutes of her grace
    bob = PortalBrowser(gateway_app, clock)
    bob.login("bob")
    for person in (bob, alice):
        assert ask_nginx(gateway_app, WIKI, person.session_token()).status_code == 200
    clock.advance(300)  # alice's grace is over; bob is still out of the scope
    assert ask_nginx(gateway_app, WIKI, alice.session_token()).status_code == 401
    assert ask_nginx(gateway_app, WIKI, bob.session_token()).status_code == 200


def test_sc70_the_gateway_keeps_a_grace_it_is_the_first_to_see(tmp_path, clock):
    gateway_app = make_gateway_app(tmp_path, clock, **LONG_SESSIONS)
    configure(gateway_app, scope=settings.GROUPS, names=["staff"], grace=1)
    bob = PortalBrowser(gateway_app, clock)
    bob.login("bob")
    join(gateway_app, "bob", "staff")
    assert ask_nginx(gateway_app, WIKI, bob.session_token()).status_code == 200
    assert user(gateway_app, "bob").mfa_deadline == START + dt.timedelta(days=1)
    for _ in range(4):
        clock.advance(DAY / 4 - 15)
        assert ask_nginx(gateway_app, WIKI, bob.session_token()).status_code == 200
    clock.advance(60)
    assert ask_nginx(gateway_app, WIKI, bob.session_token()).status_code == 401


def test_sc35_a_two_factor_rule_steps_a_postponed_user_up_with_no_later(gateway_app, clock):
    configure(gateway_app, grace=5)
    alice = PortalBrowser(gateway_app, clock)
    alice.login("alice")
    postpone(alice)
    response = ask_nginx(gateway_app, VAULT, alice.session_token())
    assert response.status_code == 401
    assert location(continue_to_second_factor(alice, portal_rd(response))) == "/mfa/setup"
    assert LATER_BUTTON not in alice.page("/mfa/setup")
    assert location(alice.post("/mfa/setup/later")) == "/mfa/setup"
    secret = alice.setup_secret()
    alice.post("/mfa/setup", {"code": alice.code(secret)})
    alice.page("/mfa/recovery-codes")
    assert location(alice.post("/mfa/recovery-codes")) == VAULT
    assert ask_nginx(gateway_app, VAULT, alice.session_token()).status_code == 200
    assert user(gateway_app).mfa_deadline is None


# --- A voluntary set-up from Account security ----------------------------------------


def voluntary_setup(browser, password=PASSWORD):
    """Account security -> set up an authenticator: password, secret, first code. The
    response to the code, and the secret."""
    assert 'id="set-up-authenticator"' in browser.page("/account/security")
    browser.get("/account/authenticator/first")
    response = browser.post("/account/authenticator/first", {"password": password})
    assert location(response) == "/account/authenticator/first/new"
    secret = browser.setup_secret_at("/account/authenticator/first/new")
    return browser.post("/account/authenticator/first/new", {"code": browser.code(secret)}), secret


@pytest.fixture
def volunteer(app, clock):
    class Volunteer(Browser):
        def setup_secret_at(self, path):
            page = self.page(path)
            match = re.search(r'id="totp-secret"[^>]*>([^<]+)<', page)
            assert match, page
            return match.group(1).replace(" ", "")

    return Volunteer(app, clock)


def test_a_user_outside_the_scope_sets_up_voluntarily_then_enters_codes(app, volunteer, clock):
    configure(app, scope=settings.GROUPS, names=["staff"])
    assert location(volunteer.login("bob")) == "/"
    response, secret = voluntary_setup(volunteer)
    assert location(response) == "/mfa/recovery-codes"
    codes = volunteer.page("/mfa/recovery-codes")
    assert len(re.findall(r"<code>[a-z2-7]{4}(?:-[a-z2-7]{4}){3}</code>", codes)) == 10
    assert location(volunteer.post("/mfa/recovery-codes")) == "/account/security"
    assert "<code>" not in volunteer.page("/mfa/recovery-codes")  # shown once
    # The code just given counts: this session is not ended by the guard.
    assert signed_in_as(volunteer, "bob")
    assert ("totp_enrolled", "ok", "bob", None, "from Account security") in audit_rows(
        app, "totp_enrolled"
    )
    volunteer.logout()
    clock.advance(30)
    assert location(volunteer.login("bob")) == "/mfa/verify"
    volunteer.get("/mfa/verify")
    assert location(volunteer.post("/mfa/verify", {"code": volunteer.code(secret)})) == "/"


def test_with_the_method_disabled_a_voluntary_authenticator_asks_no_code(app, volunteer, clock):
    """Chosen rule: Disabled means no code at sign-in for anyone (the seed's rule)."""
    volunteer.login("bob")
    response, _ = voluntary_setup(volunteer)
    assert location(response) == "/mfa/recovery-codes"
    volunteer.post("/mfa/recovery-codes")
    volunteer.logout()
    assert location(volunteer.login("bob")) == "/"


def test_the_postponed_user_sets_up_from_the_banner_link(app, volunteer):
    configure(app, grace=7)
    volunteer.login()
    postpone(volunteer)
    response, _ = voluntary_setup(volunteer)
    assert location(response) == "/mfa/recovery-codes"
    volunteer.post("/mfa/recovery-codes")
    assert banner(volunteer.page("/")) is None
    assert user(app).mfa_deadline is None


def test_voluntary_setup_checks_the_password_and_the_code_first(app, volunteer, clock):
    volunteer.login("bob")
    # Step 2 without step 1: back to the password.
    assert location(volunteer.get("/account/authenticator/first/new")) == (
        "/account/authenticator/first"
    )
    volunteer.get("/account/authenticator/first")
    response = volunteer.post("/account/authenticator/first", {"password": "wrong password"})
    assert response.status_code == 200 and "That password is not right." in text(response)
    assert ("reauth", "failed", "bob", "bob", "password") in audit_rows(app, "reauth")
    volunteer.post("/account/authenticator/first", {"password": PASSWORD})
    secret = volunteer.setup_secret_at("/account/authenticator/first/new")
    refused = volunteer.post(
        "/account/authenticator/first/new", {"code": wrong_code(secret, clock)}
    )
    assert location(refused) == "/account/authenticator/first/new"
    with app.app_context():
        from standalone_mfa.factors import totp

        assert totp.credential_of(User.get(User.username == "bob")) is None
    assert ("totp_enrolled", "failed", "bob") in {r[:3] for r in audit_rows(app)}


def test_voluntary_setup_is_only_for_a_user_without_an_authenticator(app, volunteer):
    configure(app)
    volunteer.enrol("bob")
    page = volunteer.page("/account/security")
    assert 'id="set-up-authenticator"' not in page
    for path in ("/account/authenticator/first", "/account/authenticator/first/new"):
        assert location(volunteer.get(path)) == "/account/security"


# --- The administrator's settings ----------------------------------------------------


def admin_after_step_up(app, clock):
    admin = signed_in_admin(app, clock)
    secret = admin.secret
    step_up(admin, secret)
    admin.get("/admin/mfa")
    return admin


FULL = {
    "mfa_method": "totp",
    "remember_days": "0",
    "mfa_required_for": "groups",
    "mfa_groups": " staff , finance,",
    "mfa_grace_days": "14",
}


def test_sc43_admin_saves_scope_and_grace_audited(totp_app, clock):
    admin = admin_after_step_up(totp_app, clock)
    join(totp_app, "alice", "staff")
    response = admin.post("/admin/mfa", FULL)
    assert location(response) == "/admin/mfa"
    with totp_app.app_context():
        assert settings.mfa_required_for() == "groups"
        assert settings.mfa_groups() == ("finance", "staff")
        assert settings.mfa_grace_days() == 14
    said = admin_messages(admin)
    assert (
        "Required for groups finance,staff; users who must set up may postpone it for 14 days."
        in said
    )
    assert "No user is in finance yet: its members will have to use MFA once added." in said
    assert ("mfa_scope_changed", "ok", None, "root", "everyone -> groups finance,staff") in (
        audit_rows(totp_app, "mfa_scope_changed")
    )
    assert (
        "mfa_grace_changed",
        "ok",
        None,
        "root",
        "0 -> 14 days (0 pending deadlines moved)",
    ) in (audit_rows(totp_app, "mfa_grace_changed"))
    page = admin.page("/admin/mfa")
    assert 'value="staff, finance"' not in page and 'value="finance, staff"' in page
    assert re.search(r'<input[^>]*checked[^>]*value="groups"|value="groups"[^>]*checked', page)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"mfa_groups": "staff, not a group"}, "Not a group name: not a group."),
        ({"mfa_groups": "staff,ops;rm"}, "Not a group name: ops;rm."),
        ({"mfa_groups": " , "}, "Name at least one group (comma-separated)"),
        ({"mfa_required_for": "some"}, "Choose who must use Multi-Factor Authentication"),
        ({"mfa_grace_days": "31"}, "The grace period is 0 to 30 days."),
        ({"mfa_grace_days": "-1"}, "The grace period is 0 to 30 days."),
        ({"mfa_grace_days": "seven"}, "The grace period is 0 to 30 days."),
        ({"mfa_method": "disabled", "mfa_grace_days": "99"}, "The grace period is 0 to 30"),
    ],
)
def test_a_bad_form_saves_nothing_and_says_why(totp_app, clock, change, said):
    admin = admin_after_step_up(totp_app, clock)
    before = audit_rows(totp_app)
    response = admin.post("/admin/mfa", {**FULL, **change})
    assert response.status_code == 200
    assert said in text(response)
    with totp_app.app_context():
        assert settings.mfa_method() == "totp"
        assert settings.mfa_required_for() == "everyone"
        assert settings.mfa_grace_days() == 0
    changes = [r for r in audit_rows(totp_app) if r not in before and r[0].startswith("mfa_")]
    assert changes == []


def test_an_older_form_without_the_new_fields_keeps_them(totp_app, clock):
    admin = admin_after_step_up(totp_app, clock)
    configure(totp_app, scope=settings.GROUPS, names=["staff"], grace=3)
    admin.post("/admin/mfa", {"mfa_method": "totp", "remember_days": "5"})
    with totp_app.app_context():
        assert settings.mfa_required_for() == "groups"
        assert settings.mfa_groups() == ("staff",)
        assert settings.mfa_grace_days() == 3
        assert settings.remember_days() == 5


def test_everyone_keeps_the_group_list_for_later(totp_app, clock):
    admin = admin_after_step_up(totp_app, clock)
    admin.post("/admin/mfa", FULL)
    admin.post("/admin/mfa", {**FULL, "mfa_required_for": "everyone"})
    with totp_app.app_context():
        assert settings.mfa_required_for() == "everyone"
        assert settings.mfa_groups() == ("finance", "staff")
    assert audit_rows(totp_app, "mfa_scope_changed")[-1][4] == (
        "groups finance,staff -> everyone (groups kept: finance,staff)"
    )


def test_the_settings_refuse_bad_values_in_the_service_too(app):
    with app.app_context():
        for days in (-1, 31, True, "3"):
            with pytest.raises(ValueError):
                settings.set_mfa_grace_days(days, actor="test")
        with pytest.raises(ValueError):
            settings.set_mfa_scope("groups", [], actor="test")
        with pytest.raises(ValueError):
            settings.set_mfa_scope("some", ["staff"], actor="test")
        assert settings.mfa_grace_days() == 0 and settings.mfa_required_for() == "everyone"


# --- The CLI -------------------------------------------------------------------------


def test_cli_scope_and_grace(app):
    assert cli(app, "mfa", "scope").output.strip() == "everyone"
    result = cli(app, "mfa", "scope", "groups", "staff", "ops")
    assert result.exit_code == 0, result.output
    assert "required for members of: ops, staff." in result.output
    assert "No user is in ops, staff yet" in result.output
    assert cli(app, "mfa", "scope").output.strip() == "groups ops,staff"
    assert cli(app, "mfa", "grace", "9").exit_code == 0
    assert cli(app, "mfa", "grace").output.strip() == "9"
    assert cli(app, "mfa", "scope", "everyone").exit_code == 0
    assert cli(app, "mfa", "scope").output.strip() == "everyone (groups kept: ops,staff)"
    rows = [r for r in audit_rows(app) if r[0] in ("mfa_scope_changed", "mfa_grace_changed")]
    assert rows == [
        ("mfa_scope_changed", "ok", None, "cli", "everyone -> groups ops,staff"),
        ("mfa_grace_changed", "ok", None, "cli", "0 -> 9 days (0 pending deadlines moved)"),
        (
            "mfa_scope_changed",
            "ok",
            None,
            "cli",
            "groups ops,staff -> everyone (groups kept: ops,staff)",
        ),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("scope", "groups"),
        ("scope", "groups", "staff", "bad name"),
        ("scope", "groups", "a,b"),
        ("scope", "everyone", "staff"),
        ("scope", "some"),
        ("grace", "31"),
        ("grace", "-1"),
        ("grace", "soon"),
    ],
)
def test_cli_refuses_bad_input_and_changes_nothing(app, args):
    result = cli(app, "mfa", *args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    with app.app_context():
        assert settings.mfa_required_for() == "everyone" and settings.mfa_grace_days() == 0
    assert [r for r in audit_rows(app) if r[0].startswith("mfa_")] == []


def test_cli_says_which_groups_have_no_member(app):
    join(app, "alice", "staff")
    result = cli(app, "mfa", "scope", "groups", "staff", "ops")
    assert "No user is in ops yet" in result.output
    assert cli(app, "mfa", "scope", "groups", "staff").output.count("No user is in") == 0


def test_the_scope_message_is_said_only_when_scope_or_grace_changed(totp_app, clock):
    admin = admin_after_step_up(totp_app, clock)
    admin.post("/admin/mfa", {"mfa_method": "totp", "remember_days": "0"})
    said = admin_messages(admin)
    assert "Multi-Factor Authentication is now set to TOTP." in said
    assert not [m for m in said if m.startswith("Required for")]
    admin.post("/admin/mfa", {**FULL, "mfa_grace_days": "1"})
    assert (
        "Required for groups finance,staff; users who must set up may postpone it for 1 day."
        in admin_messages(admin)
    )
