"""Each event the issue names mails its user once (SC-37): the right address, what
happened, when, from which address and browser, what to do if it was not them; a
plain-text and an HTML part; never the code, secret, recovery codes, token or
password involved. Wrong codes after the right password are told at most once an
hour, a lock once; an administrator's reset is told as promptly from the API and the
CLI as from the browser."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from functools import partial

import pytest
from prometheus_client import REGISTRY
from support.app import PASSWORD
from support.client import Browser, cli, together, totp_api
from support.db import audit_rows, failures, set_code_failures, set_method, set_remember_days
from support.oath import fresh_code, spellings, wrong_code
from support.pages import location
from support.paths import ROOT
from support.servers import app_env
from support.smtp import mail_config
from support.steps import (
    act,
    api_token,
    confirm_for_new_authenticator,
    new_authenticator_secret,
    regenerate,
    signed_in_admin,
    step_up,
    use_recovery_code,
)

from standalone_mfa.core import metrics
from standalone_mfa.core.models import Notice, User
from standalone_mfa.notices import outbox, sender

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
WHEN = "2026-11-28 12"  # the frozen clock's day and hour, in UTC (alice has no zone)
# The only facts a notice keeps: nothing a secret could hide in.
ALLOWED_FACTS = {"at", "ip", "user_agent", "left", "days", "failures", "keys", "name", "key_kind"}


@pytest.fixture
def totp_mail_app(mail_app):
    set_method(mail_app, "totp")
    return mail_app


def person(app, clock) -> Browser:
    browser = Browser(app, clock)
    browser.client.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    return browser


def enrolled(app, clock, smtp, username="alice") -> tuple[Browser, str]:
    """`username` set up an authenticator (its notice sent before the test goes on)."""
    browser = person(app, clock)
    secret = browser.enrol(username)
    settle(smtp, len(smtp.received) + 1)
    return browser, secret


def notices(app, kind=None) -> list[Notice]:
    with app.app_context():
        query = Notice.select().order_by(Notice.id)
        if kind is not None:
            query = query.where(Notice.kind == kind)
        return list(query)


def settle(smtp, count):
    """The mails so far, once the sender is idle and `count` of them have arrived."""
    smtp.wait_for(count)
    assert sender.wait_idle(10)
    time.sleep(0.1)
    return list(smtp.received)


SUBJECTS = {
    "totp_set_up": "An authenticator app was set up for your account",
    "totp_moved": "Your sign-in codes moved to a new authenticator app",
    "totp_reset": "Your two-factor sign-in was reset by an administrator",
    "recovery_code_used": "A recovery code of your account was used",
    "recovery_codes_new": "New recovery codes were made for your account",
    "device_remembered": "A browser was remembered for your account",
    "second_factor_locked": "Two-factor sign-in to your account is locked",
    "wrong_codes": "Someone entered your password and then a wrong code",
}


def the_mail(app, smtp, kind, *, to="alice@example.com", secrets=(), ip="127.0.0.1"):
    """The one notice of `kind` (sent, to `to`, facts limited to ALLOWED_FACTS) and
    its one mail, which says when, from where and what to do; none of `secrets` is
    in the message, raw or decoded."""
    [notice] = notices(app, kind)
    with app.app_context():
        facts = outbox.facts_of(notice)
    assert set(facts) <= ALLOWED_FACTS, facts
    assert notice.sent_at is not None, notice.last_error
    assert notice.to_address == to
    mails = [m for m in smtp.received if m.message["Subject"] == SUBJECTS[kind]]
    assert len(mails) == 1, [m.message["Subject"] for m in smtp.received]
    [mail] = mails
    assert mail.envelope_to == [to] and mail.message["To"] == to
    assert mail.message.get_body(("plain",)) is not None
    assert mail.message.get_body(("html",)) is not None
    for part in (mail.text, mail.html):
        assert WHEN in part and "UTC" in part  # when
        if ip:
            assert ip in part  # from which address
        assert "Firefox 133 on Linux" in part  # and browser, named
        assert "If this was not you" in part or "If you did not ask" in part
    headers = "".join(f"{k}: {v}\n" for k, v in mail.message.items())
    for secret in secrets:
        for spelling in {secret, secret.upper(), secret.lower()}:
            assert spelling not in mail.raw, f"{spelling!r} in the raw mail"
            assert spelling not in mail.text and spelling not in mail.html
            assert spelling not in headers
    return mail


def secrets_of(browser, secret, *extra) -> list[str]:
    found = [PASSWORD, secret, *extra]
    for code in getattr(browser, "recovery_codes", []):
        found += sorted(spellings(code))
    return found


# --- each event, one mail with its facts and none of its secrets


def test_sc37_setting_up_an_authenticator_is_told_without_the_secret_or_codes(
    totp_mail_app, clock, smtp
):
    browser = person(totp_mail_app, clock)
    browser.login()
    secret = browser.setup_secret()
    first_code = browser.code(secret)
    assert location(browser.submit_code("/mfa/setup", first_code)) == "/"
    settle(smtp, 1)
    mail = the_mail(
        totp_mail_app, smtp, "totp_set_up", secrets=secrets_of(browser, secret, first_code)
    )
    assert mail.message["Subject"] == "An authenticator app was set up for your account"
    assert "authenticator app was set up" in mail.text
    assert len(smtp.received) == 1  # the first recovery codes are part of the set-up


def test_sc37_a_voluntary_set_up_from_account_security_is_told_too(mail_app, clock, smtp):
    """A user outside the policy's scope who sets up from Account security is mailed
    as one whose set-up was required (signin.policy)."""
    browser = person(mail_app, clock)
    browser.login()  # the method is Disabled: signed in with the password alone
    browser.get("/account/authenticator/first")
    response = browser.post("/account/authenticator/first", {"password": PASSWORD})
    assert location(response) == "/account/authenticator/first/new"
    page = browser.page("/account/authenticator/first/new")
    secret = re.search(r'id="totp-secret"[^>]*>([^<]+)<', page).group(1).replace(" ", "")
    first_code = browser.code(secret)
    response = browser.post("/account/authenticator/first/new", {"code": first_code})
    assert location(response) == "/mfa/recovery-codes"
    settle(smtp, 1)
    the_mail(mail_app, smtp, "totp_set_up", secrets=secrets_of(browser, secret, first_code))


def test_a_wrong_first_code_at_set_up_is_not_a_wrong_codes_notice(totp_mail_app, clock, smtp):
    browser = person(totp_mail_app, clock)
    browser.login()
    secret = browser.setup_secret()
    browser.post("/mfa/setup", {"code": wrong_code(secret, clock)})
    assert sender.wait_idle(5)
    assert notices(totp_mail_app) == [] and smtp.received == []


def test_sc37_moving_to_a_new_authenticator_app_is_told(totp_mail_app, clock, smtp):
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    code = fresh_code(browser, secret)
    response = confirm_for_new_authenticator(browser, PASSWORD, code=code)
    assert location(response) == "/account/authenticator/new"
    new_secret = new_authenticator_secret(browser)
    new_code = browser.code(new_secret)
    response = browser.post("/account/authenticator/new", {"code": new_code})
    assert location(response) == "/account/security"
    settle(smtp, 2)
    mail = the_mail(
        totp_mail_app, smtp, "totp_moved", secrets=secrets_of(browser, new_secret, code, new_code)
    )
    assert "new authenticator app" in mail.text and "old one no longer works" in mail.text


def test_sc37_an_administrators_reset_on_the_admin_page_names_no_administrator(
    totp_mail_app, clock, smtp
):
    enrolled(totp_mail_app, clock, smtp)
    set_method(totp_mail_app, "disabled")  # root steps up with the password alone
    admin = signed_in_admin(totp_mail_app, clock)
    admin.client.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    step_up(admin)
    act(admin, "alice", "reset-mfa")
    settle(smtp, 2)
    mail = the_mail(totp_mail_app, smtp, "totp_reset", secrets=[PASSWORD])
    assert mail.message["Subject"] == "Your two-factor sign-in was reset by an administrator"
    for part in (mail.text, mail.html):
        assert "An administrator reset" in part
        assert "root" not in part  # which administrator stays in the audit trail


def test_sc37_an_api_reset_is_mailed_after_the_response_without_mail_send(
    totp_mail_app, clock, smtp
):
    enrolled(totp_mail_app, clock, smtp)
    token = api_token(totp_mail_app)
    client = totp_mail_app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    assert totp_api(totp_mail_app, "DELETE", "alice", token, client=client).status_code == 204
    # No `mail send`: the process's sender, woken after the response, delivers it.
    settle(smtp, 2)
    mail = the_mail(totp_mail_app, smtp, "totp_reset", secrets=[token, PASSWORD])
    assert "root" not in mail.text and "root" not in mail.html


def test_sc37_a_cli_reset_has_been_mailed_when_the_command_returns(totp_mail_app, clock, smtp):
    enrolled(totp_mail_app, clock, smtp)
    assert sender.wait_idle(5)
    before = len(smtp.received)
    result = cli(totp_mail_app, "mfa", "reset", "alice")
    assert result.exit_code == 0, result.output
    # Sent by the command itself (flush after it), not by the thread or by cron.
    assert len(smtp.received) == before + 1
    [notice] = notices(totp_mail_app, "totp_reset")
    assert notice.sent_at is not None
    mail = smtp.received[-1]
    assert mail.message["Subject"] == "Your two-factor sign-in was reset by an administrator"
    assert "on the server's command line" in mail.text and "From the address" not in mail.text


def test_sc37_a_cli_reset_in_its_own_process_is_mailed_before_it_exits(totp_mail_app, clock, smtp):
    enrolled(totp_mail_app, clock, smtp)
    assert sender.wait_idle(5)
    before = len(smtp.received)
    command = [sys.executable, "-m", "flask", "--app", "standalone_mfa", "mfa", "reset", "alice"]
    done = subprocess.run(  # noqa: S603 -- our own interpreter
        command,
        cwd=ROOT,
        env=app_env(totp_mail_app, **mail_config(smtp)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(smtp.received) == before + 1  # no wait: it arrived before the exit
    assert smtp.received[-1].envelope_to == ["alice@example.com"]
    assert "reset the two-factor sign-in" in smtp.received[-1].text


def test_sc37_a_recovery_code_used_at_sign_in_says_how_many_are_left(totp_mail_app, clock, smtp):
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    browser.logout()
    used = browser.recovery_codes[3]
    browser.login()
    assert location(use_recovery_code(browser, used)) == "/"
    settle(smtp, 2)
    mail = the_mail(totp_mail_app, smtp, "recovery_code_used", secrets=secrets_of(browser, secret))
    for part in (mail.text, mail.html):
        assert "A recovery code of your account was used" in part
        assert "You have 9 recovery codes left." in part


def test_sc37_a_recovery_code_used_to_prove_it_is_you_is_told_too(totp_mail_app, clock, smtp):
    """Re-proving who one is with a recovery code (to move to a new app) spends it:
    told like a sign-in's, and the move that follows has its own notice."""
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    for code in browser.recovery_codes[:7]:
        with totp_mail_app.app_context():  # as if 7 had been used already
            from standalone_mfa.factors import recovery

            assert recovery.spend(User.get(User.username == "alice"), code)
    response = confirm_for_new_authenticator(
        browser, PASSWORD, recovery_code=browser.recovery_codes[8]
    )
    assert location(response) == "/account/authenticator/new"
    settle(smtp, 2)
    mail = the_mail(totp_mail_app, smtp, "recovery_code_used", secrets=secrets_of(browser, secret))
    assert "You have 2 recovery codes left. Make new ones" in mail.text


def test_sc37_new_recovery_codes_are_told_without_the_codes(totp_mail_app, clock, smtp):
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    old_codes = browser.recovery_codes
    code = fresh_code(browser, secret)
    assert location(regenerate(browser, PASSWORD, code)) == "/mfa/recovery-codes"
    browser.save_recovery_codes()
    assert browser.recovery_codes != old_codes
    settle(smtp, 2)
    secrets = secrets_of(browser, secret, code) + [c for o in old_codes for c in spellings(o)]
    mail = the_mail(totp_mail_app, smtp, "recovery_codes_new", secrets=secrets)
    assert "The old ones no longer work." in mail.text


def test_sc37_a_remembered_device_is_told_with_its_days_not_its_token(totp_mail_app, clock, smtp):
    set_remember_days(totp_mail_app, 14)
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    browser.logout()
    clock.advance(30)
    browser.login()
    code = fresh_code(browser, secret)
    response = browser.post("/mfa/verify", {"code": code, "remember_device": "y"})
    assert location(response) == "/"
    token = browser.cookies()["smfa_device"]
    settle(smtp, 2)
    mail = the_mail(
        totp_mail_app, smtp, "device_remembered", secrets=secrets_of(browser, secret, code, token)
    )
    for part in (mail.text, mail.html):
        assert "for 14 days" in part and "Account security page" in part
    assert len(notices(totp_mail_app)) == 2  # a code without "remember": nothing


# --- wrong codes after the right password: at most once an hour


def test_sc37_wrong_codes_after_the_password_are_told_at_most_once_an_hour(
    totp_mail_app, clock, smtp
):
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    browser.logout()
    # A wrong password is not "after a right password": nothing.
    browser.login(password="not the password")
    assert notices(totp_mail_app, "wrong_codes") == []
    browser.login()
    first_wrong = wrong_code(secret, clock)
    browser.post("/mfa/verify", {"code": first_wrong})
    settle(smtp, 2)
    mail = the_mail(
        totp_mail_app, smtp, "wrong_codes", secrets=secrets_of(browser, secret, first_wrong)
    )
    assert mail.message["Subject"] == "Someone entered your password and then a wrong code"
    for part in (mail.text, mail.html):
        assert "right password" in part and "someone knows your password" in part
        assert "change your password" in part
    # A guesser's burst within the hour: codes and recovery codes, new sign-ins too.
    for attempt in range(6):
        clock.advance(120)  # past the back-off; the ended sign-in starts again
        assert location(browser.login()) == "/mfa/verify"
        if attempt % 2:
            use_recovery_code(browser, "aaaa-bbbb-cccc-dddd")
        else:
            browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    assert failures(totp_mail_app) == 7 < totp_mail_app.config["MFA_LOCK_AFTER"]
    assert len(notices(totp_mail_app, "wrong_codes")) == 1
    # An hour after the first, the next wrong code is told again, with the count.
    clock.advance(3600 - 6 * 120 + 1)
    assert location(browser.login()) == "/mfa/verify"
    browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    assert len(notices(totp_mail_app, "wrong_codes")) == 2
    settle(smtp, 3)
    with totp_mail_app.app_context():
        latest = outbox.facts_of(notices(totp_mail_app, "wrong_codes")[-1])
    assert latest["failures"] == 8
    assert f"That makes {latest['failures']} wrong codes in a row" in smtp.received[-1].text


def test_a_right_code_after_a_mistake_is_still_told_once(totp_mail_app, clock, smtp):
    """The first wrong code is told as it happens: a sign-in that then succeeds does
    not take it back (the person may not be the user)."""
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    browser.logout()
    clock.advance(30)
    browser.login()
    browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    assert location(browser.post("/mfa/verify", {"code": fresh_code(browser, secret)})) == "/"
    settle(smtp, 2)
    assert [n.kind for n in notices(totp_mail_app)] == ["totp_set_up", "wrong_codes"]


def test_a_replayed_right_code_is_not_told_as_wrong(totp_mail_app, clock, smtp):
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    used = browser.code(secret)  # the set-up's code: its step is used up
    browser.logout()
    browser.login()
    browser.post("/mfa/verify", {"code": used})
    assert sender.wait_idle(5)
    assert notices(totp_mail_app, "wrong_codes") == []


# --- the lock: told once


def test_sc37_the_lock_is_told_once_and_not_as_wrong_codes_too(totp_mail_app, clock, smtp):
    browser, secret = enrolled(totp_mail_app, clock, smtp)
    browser.logout()
    lock_after = totp_mail_app.config["MFA_LOCK_AFTER"]
    set_code_failures(totp_mail_app, "alice", lock_after - 1)
    assert notices(totp_mail_app, "wrong_codes") == []  # one would be due now
    clock.advance(totp_mail_app.config["BACKOFF_MAX_SECONDS"])
    browser.login()
    locking = wrong_code(secret, clock)
    browser.post("/mfa/verify", {"code": locking})
    settle(smtp, 2)
    mail = the_mail(
        totp_mail_app, smtp, "second_factor_locked", secrets=secrets_of(browser, secret, locking)
    )
    for part in (mail.text, mail.html):
        assert f"after {lock_after} wrong codes in a row" in part
        assert "ask your administrator to unlock your account" in part
    # Every later code, right or wrong, is refused without looking: no more mail.
    for _ in range(3):
        clock.advance(60)
        browser.login()
        browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
        browser.post("/mfa/verify", {"code": fresh_code(browser, secret)})
    assert sender.wait_idle(5)
    assert [n.kind for n in notices(totp_mail_app)] == ["totp_set_up", "second_factor_locked"]
    # Unlocked, then locked again: a new lock, a new notice.
    assert cli(totp_mail_app, "user", "unlock", "alice").exit_code == 0
    set_code_failures(totp_mail_app, "alice", lock_after - 1)
    clock.advance(totp_mail_app.config["BACKOFF_MAX_SECONDS"])
    browser.login()
    browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    assert len(notices(totp_mail_app, "second_factor_locked")) == 2


# --- who gets what


def test_sc37_a_user_without_a_confirmed_address_is_told_nothing(totp_mail_app, clock, smtp):
    with totp_mail_app.app_context():
        User.update(email=None, pending_email="alice@example.com").where(
            User.username == "alice"
        ).execute()
    browser = person(totp_mail_app, clock)
    secret = browser.enrol("alice")
    browser.logout()
    browser.login()
    browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    use_recovery_code(browser, browser.recovery_codes[0])
    assert sender.wait_idle(5)
    assert notices(totp_mail_app) == [] and smtp.received == []
    # bob, with an address, is told of his own set-up only, at his own address.
    person(totp_mail_app, clock).enrol("bob")
    settle(smtp, 1)
    assert [m.envelope_to for m in smtp.received] == [["bob@example.com"]]


# --- headers and markup


def test_sc37_an_address_with_a_line_break_in_its_row_is_never_sent(mail_app, clock, smtp):
    """The outbox row was changed behind the application's back (addresses are
    checked before they are stored): the mail is refused before it is made, audited,
    and nobody receives it, neither the address nor a smuggled Bcc."""
    with mail_app.app_context():
        alice = User.get(User.username == "alice")
        outbox.queue(alice, "password_changed", to="alice@example.com\r\nBcc: mallory@example.com")
        outbox.queued_since_asked()
    result = cli(mail_app, "mail", "send")
    assert result.exit_code == 1 and "1 failed" in result.output
    assert smtp.received == []
    [notice] = notices(mail_app)
    assert notice.sent_at is None and "BadAddress" in notice.last_error
    failed = [row for row in audit_rows(mail_app, "notice") if row[1] == "failed"]
    assert len(failed) == 1 and "password_changed" in failed[0][-1]


def test_sc37_markup_in_the_user_agent_never_reaches_a_mail(totp_mail_app, clock, smtp):
    """The mail names the browser (core.browsers), it never copies the header: a user
    agent made of markup reads as an unknown browser in both parts."""
    browser = person(totp_mail_app, clock)
    browser.client.environ_base["HTTP_USER_AGENT"] = '<a href="https://evil.example">x</a>'
    browser.enrol()
    [mail] = settle(smtp, 1)
    for part in (mail.text, mail.html):
        assert "evil.example" not in part
        assert "Unknown browser" in part


# --- the metric


def test_notices_are_counted_by_outcome_from_a_fixed_list(mail_app, clock, smtp):
    def value(outcome):
        return REGISTRY.get_sample_value("smfa_notices_total", {"outcome": outcome})

    before = {o: value(o) for o in metrics.NOTICE_OUTCOMES}
    with mail_app.app_context():
        alice = User.get(User.username == "alice")
        outbox.queue(alice, "password_changed")
        outbox.queue(alice, "password_changed", to="not an address")
        outbox.queued_since_asked()
        sender.send_due()
    after = {o: value(o) for o in metrics.NOTICE_OUTCOMES}
    assert {o: after[o] - before[o] for o in after} == {"sent": 1, "failed": 1}
    with pytest.raises(ValueError):
        metrics.notice("alice@example.com")


def test_sc37_two_wrong_codes_at_once_are_told_once(totp_mail_app, clock, smtp):
    """Two sign-ins of the user enter wrong codes at the same moment: the throttle's
    compare-and-set serialises them, so only one finds no notice of the hour."""
    _, secret = enrolled(totp_mail_app, clock, smtp)
    for hour in range(3):
        clock.advance(3601)
        first, second = person(totp_mail_app, clock), person(totp_mail_app, clock)
        for browser in (first, second):
            assert location(browser.login()) == "/mfa/verify"
        code = wrong_code(secret, clock)
        together(*(partial(b.post, "/mfa/verify", {"code": code}) for b in (first, second)))
        assert len(notices(totp_mail_app, "wrong_codes")) == hour + 1
