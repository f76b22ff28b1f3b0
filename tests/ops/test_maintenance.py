"""ops/maintenance: `flask --app standalone_mfa prune` and `maintenance.prune(now)`: rows
the app would already refuse (sessions past their idle or absolute limit, pending logins
past theirs, password counters quiet for a day, remembered devices past their day) are
deleted; everything still usable is kept."""

from __future__ import annotations

from support.app import PASSWORD
from support.client import Browser
from support.db import audit_events, devices_of, set_remember_days
from support.steps import remembered_browser

from standalone_mfa.core.clock import now
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import MfaThrottle, PasswordThrottle, WebSession
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import throttle
from standalone_mfa.ops import maintenance
from standalone_mfa.signin.sessions import ServerSession

MINUTE = 60
HOUR = 60 * MINUTE


def rows(app, model) -> int:
    with app.app_context():
        return model.select().count()


def prune(app, clock) -> dict[str, int]:
    with app.app_context():
        return maintenance.prune(clock.now())


def signed_in(browser, username) -> bool:
    response = browser.get("/")
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in (
        response.get_data(as_text=True)
    )


def test_prune_deletes_exactly_what_has_expired(totp_app, clock):
    app = totp_app
    with app.app_context():
        create_user("carol", PASSWORD)
    anonymous = Browser(app, clock)
    anonymous.get("/login")  # no row: an anonymous session is a signed cookie (SC-45)...
    with app.app_context():  # ...but an earlier release left anonymous rows behind
        ServerSession().ensure_record(now()).save(force_insert=True)
    idle = Browser(app, clock)
    idle.enrol("alice")
    busy = Browser(app, clock)
    busy.enrol("root")
    with app.app_context():
        throttle.begin_attempt(find_user("root"))  # one wrong code, long ago
    guesser = Browser(app, clock)
    guesser.login("mallory", "guess")  # an unknown name is counted too

    # Root stays active right up to the 12-hour absolute limit (passed 6 minutes later).
    for _ in range(36):
        clock.advance(20 * MINUTE)
        assert signed_in(busy, "root")
    setting_up = Browser(app, clock)
    setting_up.login("bob")  # set-up: 10 minutes
    clock.advance(MINUTE)
    verifying = Browser(app, clock)
    verifying.login("alice")  # code step: 5 minutes
    assert verifying.get("/mfa/verify").status_code == 200
    clock.advance(5 * MINUTE + 1)
    fresh = Browser(app, clock)
    fresh.enrol("carol")
    Browser(app, clock).login("eve", "guess")

    # The old anonymous row, idle, busy, setting_up, verifying, fresh (no row for an
    # anonymous browser, nor for a wrong password).
    assert rows(app, WebSession) == 6
    mfa_counters = rows(app, MfaThrottle)
    assert prune(app, clock) == {
        "pending_logins": 1,
        "sessions": 3,
        "password_throttles": 0,
        "remembered_devices": 0,
        "address_throttles": 0,  # this address's hour began with setting_up's sign-in
        "trusted_browsers": 0,  # alice's, root's and carol's have 90 days
        "sent_notices": 0,
        "email_links": 0,
        "revoked_app_passwords": 0,
        "passkey_challenges": 0,
        "set_up_secrets": 0,
    }

    assert rows(app, WebSession) == 2  # setting_up and fresh
    assert rows(app, PasswordThrottle) == 2  # kept for a day (see the next test)
    with app.app_context():
        assert throttle.failures(find_user("root")) == 1  # second-factor counts stay
    assert rows(app, MfaThrottle) == mfa_counters  # one per user: no growth to prune
    assert setting_up.get("/mfa/setup").status_code == 200
    assert signed_in(fresh, "carol")
    for browser, lands_on in ((idle, "/login"), (busy, "/login"), (verifying, "/login")):
        response = browser.get("/")
        assert response.status_code == 302 and response.headers["Location"] == lands_on
    # A second run finds nothing more.
    assert prune(app, clock) == {
        "pending_logins": 0,
        "sessions": 0,
        "password_throttles": 0,
        "remembered_devices": 0,
        "address_throttles": 0,
        "trusted_browsers": 0,
        "sent_notices": 0,
        "email_links": 0,
        "revoked_app_passwords": 0,
        "passkey_challenges": 0,
        "set_up_secrets": 0,
    }


def test_prune_keeps_a_password_counter_for_a_day(app, clock):
    """A counter whose back-off ended is still kept for a day: the next wrong password
    carries on from it (and is throttled at once) instead of starting from zero."""
    guesser = Browser(app, clock)
    failures = DEFAULTS["PASSWORD_BACKOFF_AFTER"] + 3
    for _ in range(failures):
        guesser.login("alice", "guess")
        clock.advance(DEFAULTS["BACKOFF_MAX_SECONDS"])
    clock.advance(23 * HOUR)
    assert prune(app, clock)["password_throttles"] == 0
    guesser.login("alice", "guess")  # failure number failures + 1
    page = guesser.login("alice", PASSWORD).get_data(as_text=True)
    assert "Too many failed sign-ins for this username. Wait 16 seconds" in page

    clock.advance(24 * HOUR + 1)
    assert prune(app, clock)["password_throttles"] == 1
    # Forgotten: a quiet day later the count starts again.
    guesser.login("alice", "guess")
    response = guesser.login("alice", PASSWORD)
    assert response.status_code == 302


def test_prune_command_prints_the_counts(app, clock):
    Browser(app, clock).login("alice")
    clock.advance(31 * MINUTE)
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "Deleted 0 pending logins, 1 sessions, 0 password throttles, 0 remembered devices,"
        " 0 address throttles, 0 trusted browsers, 0 sent notices, 0 email links,"
        " 0 revoked app passwords, 0 passkey challenges, 0 set up secrets"
    )
    assert rows(app, WebSession) == 0


def test_prune_drops_set_up_secrets_left_past_their_time(totp_app, clock):
    """A signed-in session that began moving to a new authenticator and never came
    back keeps no secret once its set-up has expired; the session itself stays."""
    import json

    from standalone_mfa.core import crypto
    from standalone_mfa.signin import setup_secret

    app = totp_app
    left, fresh = Browser(app, clock), Browser(app, clock)
    left.enrol("alice")
    fresh.enrol("bob")

    def begin_set_up(username):
        with app.app_context():
            row = WebSession.get(WebSession.user == find_user(username))
            data = {**json.loads(row.data), setup_secret.SINCE_KEY: clock.now().isoformat()}
            WebSession.update(
                pending_secret_encrypted=crypto.encrypt("JBSWY3DPEHPK3PXP"), data=json.dumps(data)
            ).where(WebSession.id == row.id).execute()

    begin_set_up("alice")
    clock.advance(DEFAULTS["MFA_SETUP_TIMEOUT"] - 60)
    begin_set_up("bob")
    assert prune(app, clock)["set_up_secrets"] == 0
    clock.advance(61)
    assert prune(app, clock)["set_up_secrets"] == 1
    with app.app_context():
        pending = {row.user.username: row.pending_secret_encrypted for row in WebSession.select()}
    assert pending["alice"] is None and pending["bob"] is not None
    assert signed_in(left, "alice")


def test_prune_deletes_passkey_challenges_past_their_time(app, clock):
    from standalone_mfa.core.models import WebAuthnChallenge
    from standalone_mfa.directory.users import find_user
    from standalone_mfa.factors import webauthn
    from standalone_mfa.ops import maintenance

    with app.test_request_context():
        # A second factor's challenge is stored (a passkey sign-in's is not, until used).
        alice = find_user("alice")
        webauthn.authentication_options(alice, binding="a" * 43, at=clock.now())
        assert maintenance.prune(clock.now())["passkey_challenges"] == 0
    clock.advance(300)  # WEBAUTHN_TIMEOUT: no longer usable
    with app.test_request_context():
        assert maintenance.prune(clock.now())["passkey_challenges"] == 1
        assert WebAuthnChallenge.select().count() == 0


def test_prune_deletes_remembered_devices_past_their_day(totp_app, new_browser, clock):
    from standalone_mfa.ops import maintenance

    set_remember_days(totp_app, 1)
    secret = new_browser().enrol()
    remembered_browser(new_browser, secret)
    with totp_app.app_context():
        assert maintenance.prune(clock.now())["remembered_devices"] == 0
    clock.advance(24 * 3600 + 1)
    with totp_app.app_context():
        assert maintenance.prune(clock.now())["remembered_devices"] == 1
    assert devices_of(totp_app, "alice") == []


def test_prune_audits_each_pending_login_it_ends(totp_app, clock):
    """As the guard does when it finds one: the person's activity says it expired."""
    secret = Browser(totp_app, clock).enrol("alice")
    clock.advance(60)
    verifying = Browser(totp_app, clock)
    verifying.client.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    verifying.login("alice")  # the code step: 5 minutes
    clock.advance(5 * MINUTE + 1)
    assert prune(totp_app, clock)["pending_logins"] == 1
    (row,) = audit_events(totp_app, "pending_expired")
    assert (row.username, row.outcome, row.detail, row.ip) == (
        "alice",
        "ended",
        "totp_verify",
        "192.0.2.44",
    )
    # Back later, alice signs in and reads it on her Account security page.
    browser = Browser(totp_app, clock)
    browser.login("alice")
    browser.post("/mfa/verify", {"code": browser.code(secret)})
    page = browser.page("/account/security")
    assert "<td>Sign-in not finished in time</td><td>192.0.2.44</td>" in page
    assert prune(totp_app, clock)["pending_logins"] == 0
    assert len(audit_events(totp_app, "pending_expired")) == 1  # nothing audited twice
