"""The outbox and its sender (SC-37): a notice is queued in its event's transaction,
sent once after the response through a real SMTP server, retried with back-off when
the server is down or refuses, never making the user wait; `mail send --due` from cron,
`mail send` by hand (every pending notice at once)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import pytest
from flask import Flask
from support.app import PASSWORD, make_app
from support.client import Browser, cli, together
from support.db import audit_rows
from support.paths import ROOT
from support.servers import app_env
from support.smtp import SENDER, mail_config
from support.steps import change_password

from standalone_mfa.core.models import Notice, User
from standalone_mfa.notices import outbox, sender

NEW_PASSWORD = "a new password for alice 2"


def signed_in(app, clock, username="alice") -> Browser:
    browser = Browser(app, clock)
    browser.login(username)
    return browser


def notices(app) -> list[Notice]:
    with app.app_context():
        return list(Notice.select().order_by(Notice.id))


def test_sc37_a_password_change_mails_the_user_once_after_the_response(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    browser.headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}
    change_password(browser, PASSWORD, NEW_PASSWORD)
    [mail] = smtp.wait_for(1)
    assert mail.envelope_to == ["alice@example.com"]
    assert mail.message["To"] == "alice@example.com"
    assert mail.message["From"] == SENDER
    assert mail.message["Subject"] == "Your password was changed"
    for part in (mail.text, mail.html):
        assert "password of your account was changed" in part
        assert "2026-11-28 12:00 UTC" in part  # when, in UTC without a time zone
        assert "127.0.0.1" in part  # from which address
        assert "If this was not you" in part
        assert NEW_PASSWORD not in part and PASSWORD not in part
    assert "alice" not in "".join(f"{k}: {v}" for k, v in mail.message.items()).replace(
        "alice@example.com", ""
    )  # the username is never in a header (SC-37)
    assert sender.wait_idle(5)
    [notice] = notices(mail_app)
    assert notice.sent_at is not None and notice.attempts == 1
    assert [row[:2] for row in audit_rows(mail_app, "notice")] == [("notice", "sent")]
    time.sleep(0.2)
    assert len(smtp.received) == 1  # once


def test_the_facts_are_encrypted_at_rest_and_say_the_time_in_the_users_zone(mail_app, clock, smtp):
    with mail_app.app_context():
        User.update(time_zone="Europe/Paris").where(User.username == "alice").execute()
    change_password(signed_in(mail_app, clock), PASSWORD, NEW_PASSWORD)
    [mail] = smtp.wait_for(1)
    assert "2026-11-28 13:00 CET" in mail.text
    [notice] = notices(mail_app)
    assert "127.0.0.1" not in notice.facts and "2026-11-28" not in notice.facts


def test_without_mail_server_nothing_is_queued(app, clock):
    with app.app_context():
        User.update(email="alice@example.com").where(User.username == "alice").execute()
    change_password(signed_in(app, clock), PASSWORD, NEW_PASSWORD)
    assert notices(app) == []


def test_a_user_without_a_confirmed_address_gets_no_mail(mail_app, clock, smtp):
    with mail_app.app_context():
        User.update(email=None, pending_email="alice@example.com").where(
            User.username == "alice"
        ).execute()
    change_password(signed_in(mail_app, clock), PASSWORD, NEW_PASSWORD)
    assert notices(mail_app) == []
    assert sender.wait_idle(5) and smtp.received == []


def test_sc37_the_notice_is_queued_with_its_event_or_not_at_all(
    mail_app, clock, smtp, monkeypatch
):
    from standalone_mfa.signin import sessions

    def broken(*args, **kwargs):
        raise RuntimeError("the event failed after its notice was queued")

    monkeypatch.setattr(sessions, "end_other_sessions", broken)
    browser = signed_in(mail_app, clock)
    browser.get("/account/password")
    response = browser.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert response.status_code == 500
    assert notices(mail_app) == []  # rolled back with the password change


def test_sc37_smtp_down_the_step_completes_and_mail_send_delivers_later(mail_app, clock, smtp):
    smtp.stop()
    response = change_password(signed_in(mail_app, clock), PASSWORD, NEW_PASSWORD)
    assert response.status_code == 302  # the user's step completed
    assert sender.wait_idle(10)
    [notice] = notices(mail_app)
    assert notice.sent_at is None and notice.attempts == 1
    assert "ConnectionRefusedError" in notice.last_error
    assert notice.next_attempt_at == clock.now() + dt.timedelta(seconds=60)  # back-off
    [failed] = audit_rows(mail_app, "notice")
    assert failed[1] == "failed" and "password_changed, attempt 1" in failed[-1]

    smtp.start()
    # The app's own sender and cron's `mail send --due` keep the back-off ...
    with mail_app.app_context():
        assert sender.send_due() == sender.Round(0, 0)
    early = cli(mail_app, "mail", "send", "--due")
    assert early.exit_code == 0 and "Sent 0 notices" in early.output  # not due yet
    assert smtp.received == []
    # ... while the operator who just fixed the server sends it at once, by hand.
    now = cli(mail_app, "mail", "send")
    assert now.exit_code == 0, now.output
    assert "Sent 1 notices; 0 failed and will be retried; 0 pending." in now.output
    [mail] = smtp.wait_for(1)
    assert mail.message["Subject"] == "Your password was changed"
    assert "2026-11-28 12:00 UTC" in mail.text  # when it happened, not when it was sent
    assert cli(mail_app, "mail", "send").output.startswith("Sent 0 notices")  # once
    clock.advance(61)
    assert cli(mail_app, "mail", "send", "--due").output.startswith("Sent 0 notices")


def test_mail_send_by_hand_tries_every_pending_notice_once_and_keeps_backing_off(
    mail_app, clock, smtp
):
    """More notices than one batch, the server still down: `mail send` tries each
    once (it does not loop on failures), and each gets its next back-off."""
    smtp.stop()
    with mail_app.app_context():
        alice = User.get(User.username == "alice")
        for _ in range(outbox.BATCH + 5):
            outbox.queue(alice, "password_changed")
        outbox.queued_since_asked()
    result = cli(mail_app, "mail", "send")
    assert result.exit_code == 1
    assert f"Sent 0 notices; {outbox.BATCH + 5} failed" in result.output
    assert {n.attempts for n in notices(mail_app)} == {1}
    assert {n.next_attempt_at for n in notices(mail_app)} == {
        clock.now() + dt.timedelta(seconds=60)
    }
    smtp.start()
    assert "Sent 0 notices" in cli(mail_app, "mail", "send", "--due").output
    assert f"Sent {outbox.BATCH + 5} notices" in cli(mail_app, "mail", "send").output
    assert len(smtp.wait_for(outbox.BATCH + 5)) == outbox.BATCH + 5


def test_mail_send_help_says_by_hand_now_and_cron_due(app):
    said = " ".join(cli(app, "mail", "send", "--help").output.split())
    assert "Send every pending notice now, without waiting for the retry back-off" in said
    assert "From cron, use --due" in said


def test_sc37_a_refusing_server_backs_off_and_dry_run_shows_the_notice(mail_app, clock, smtp):
    smtp.set_mode("refuse")
    change_password(signed_in(mail_app, clock), PASSWORD, NEW_PASSWORD)
    assert sender.wait_idle(10)
    delays = []
    for _ in range(3):
        [notice] = notices(mail_app)
        delays.append((notice.next_attempt_at - clock.now()).total_seconds())
        clock.advance(delays[-1])
        failed = cli(mail_app, "mail", "send", "--due")
        assert failed.exit_code == 1 and "1 failed and will be retried" in failed.output
    [notice] = notices(mail_app)
    assert delays == [60, 120, 240] and notice.attempts == 4
    assert "554" in notice.last_error
    dry = cli(mail_app, "mail", "send", "--dry-run")
    assert dry.exit_code == 0
    assert "password_changed\tto alice@example.com" in dry.output
    assert "attempt 5" in dry.output and "554" in dry.output
    assert "1 notices pending; nothing sent (dry run)." in dry.output
    assert smtp.received == []
    smtp.set_mode("accept")
    clock.advance(480)
    assert "Sent 1 notices" in cli(mail_app, "mail", "send", "--due").output
    assert len(smtp.wait_for(1)) == 1


def test_sc37_a_hanging_server_never_makes_the_user_wait(tmp_path, clock, smtp):
    smtp.set_mode("hang")
    app = make_app(tmp_path, clock, **mail_config(smtp, MAIL_TIMEOUT=3))
    with app.app_context():
        User.update(email="alice@example.com").where(User.username == "alice").execute()
    browser = signed_in(app, clock)
    started = time.monotonic()
    response = change_password(browser, PASSWORD, NEW_PASSWORD)
    took = time.monotonic() - started
    assert response.status_code == 302
    # The response came back while the sender was still talking to the hung server:
    # the request did not wait for the mail's conversation (up to MAIL_TIMEOUT).
    [notice] = notices(app)
    assert notice.sent_at is None
    assert took < 2.5, took
    assert sender.wait_idle(10)
    [notice] = notices(app)
    assert notice.sent_at is None and "timed out" in notice.last_error.lower()


def test_mail_send_says_mail_is_off_without_a_server(app):
    result = cli(app, "mail", "send")
    assert result.exit_code == 1
    assert "MAIL_SERVER is not set" in result.output


@pytest.mark.parametrize(
    "sender_value",
    ["", "not an address", "a@b.test\r\nBcc: x@evil.test", None],
)
def test_sc37_a_bad_sender_address_refuses_to_start(tmp_path, clock, smtp, sender_value):
    from standalone_mfa.core.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="MAIL_DEFAULT_SENDER"):
        make_app(tmp_path, clock, **mail_config(smtp, MAIL_DEFAULT_SENDER=sender_value))


@pytest.mark.parametrize(
    "sender_value", ["signin@corp.internal", ("Sign-in", "signin@nas.home.arpa")]
)
def test_a_sender_on_an_intranet_name_starts_and_sends(tmp_path, clock, smtp, sender_value):
    app = make_app(tmp_path, clock, **mail_config(smtp, MAIL_DEFAULT_SENDER=sender_value))
    with app.app_context():
        User.update(email="bob@corp.lan").where(User.username == "alice").execute()
    change_password(signed_in(app, clock), PASSWORD, NEW_PASSWORD)
    [mail] = smtp.wait_for(1)
    assert mail.envelope_to == ["bob@corp.lan"]
    address = sender_value if isinstance(sender_value, str) else sender_value[1]
    assert address in mail.message["From"]
    assert sender.wait_idle(5)


def test_sc37_two_mail_send_processes_at_once_send_each_notice_once(mail_app, clock, smtp):
    with mail_app.app_context():
        alice = User.get(User.username == "alice")
        for _ in range(30):
            outbox.queue(alice, "password_changed", at=clock.now() - dt.timedelta(days=1))
        outbox.queued_since_asked()  # these are for the two processes, not this context
    env = app_env(mail_app, **mail_config(smtp))
    command = [sys.executable, "-m", "flask", "--app", "standalone_mfa", "mail", "send"]

    def run():
        return subprocess.run(  # noqa: S603 -- our own interpreter
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    first, second = together(run, run, timeout=60)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    mails = smtp.wait_for(30)
    time.sleep(0.3)
    assert len(smtp.received) == 30
    assert len({m.message["Message-ID"] for m in mails}) == 30
    sent = [int(r.stdout.split()[1]) for r in (first, second)]
    assert sum(sent) == 30, (first.stdout, second.stdout)
    assert all(n.sent_at is not None for n in notices(mail_app))


def test_prune_deletes_sent_notices_after_30_days_and_never_an_unsent_one(mail_app, clock, smtp):
    with mail_app.app_context():
        alice = User.get(User.username == "alice")
        old_sent, old_unsent, recent_sent = (
            outbox.queue(alice, "password_changed") for _ in range(3)
        )
        outbox.mark_sent(old_sent, clock.now())
        outbox.mark_sent(recent_sent, clock.now() + dt.timedelta(days=2))
        outbox.queued_since_asked()
    clock.advance(31 * 86400)
    result = cli(mail_app, "prune")
    assert "1 sent notices" in result.output
    assert [n.id for n in notices(mail_app)] == [old_unsent.id, recent_sent.id]


def test_a_sender_told_its_app_is_gone_does_no_more_rounds(mail_app, monkeypatch):
    """The tests build an app per test in one process: the sender, woken after its
    app's test (its minute's wake-up), must not work in the next test's database."""
    rounds = []
    monkeypatch.setattr(sender, "send_due", lambda *a, **k: rounds.append(1) or sender.Round())

    def woken_as_each_minute() -> int:
        sender._thread._wake.set()  # what its once-a-minute wake-up does
        deadline = time.monotonic() + 5
        while sender._thread._wake.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # the round it may start, done
        return len(rounds)

    sender.kick(mail_app)
    assert sender.wait_idle(5) and rounds == [1]
    sender.forget(Flask("another app"))  # not its app: nothing changes
    assert woken_as_each_minute() == 2
    sender.forget(mail_app)
    assert woken_as_each_minute() == 2
    sender.kick(mail_app)  # a new kick names an app again
    assert sender.wait_idle(5) and rounds == [1, 1, 1]
