"""factors/trusted_browsers: a browser that completed a sign-in keeps its own
wrong-password counter for that user, so a stranger who knows only the username cannot
lock the user out of it (SC-41); only a live cookie of that very user counts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from support.app import PASSWORD
from support.client import TRUSTED_BROWSER_COOKIE, Browser, signed_in_as
from support.db import sessions_of
from support.pages import location

from standalone_mfa.accounts import administration, reset
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import AddressThrottle, PasswordThrottle, TrustedBrowser, User
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import passwords, proofs, throttle
from standalone_mfa.ops import maintenance

WAIT_RE = re.compile(r"Wait (\d+) seconds?")
ERROR_RE = re.compile(r'class="message message-error" role="alert">([^<]+)<')
WRONG = "The username or password is not right."
ATTACKER_IP = "203.0.113.66"
DAY = 24 * 3600


def from_address(browser: Browser, ip: str) -> Browser:
    browser.client.environ_base["REMOTE_ADDR"] = ip
    return browser


def password_attempt(browser: Browser, username: str, password: str) -> tuple[int, str]:
    """One try at the sign-in page: (status, the error shown or "" on success)."""
    browser.get("/login")
    response = browser.post("/login", {"username": username, "password": password})
    if response.status_code == 302:
        return 302, ""
    found = ERROR_RE.search(response.get_data(as_text=True))
    return response.status_code, found.group(1) if found else ""


def trusted_cookie(browser: Browser) -> str | None:
    cookie = browser.client.get_cookie(TRUSTED_BROWSER_COOKIE)
    return cookie.value if cookie else None


def lock_out(app, username: str) -> None:
    """A stranger (own address, fresh browsers) puts `username` into its back-off."""
    for n in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"]):
        password_attempt(from_address(Browser(app, None), ATTACKER_IP), username, f"guess {n}")


@pytest.fixture
def evaluated(monkeypatch):
    """Every password the hash was checked for: (username or None, password)."""
    seen = []
    real = passwords.check_password

    def counting(user, raw):
        seen.append((user.username if user else None, raw))
        return real(user, raw)

    monkeypatch.setattr(passwords, "check_password", counting)
    return seen


def attacker_evaluations_today(seconds: int) -> int:
    """How many wrong passwords the per-username back-off alone lets one guesser have
    evaluated in `seconds`, trying again the moment it allows (the rule before SC-41)."""
    at, failures, count = 0, 0, 0
    while at < seconds:
        count += 1
        failures += 1
        at += (
            throttle.delay_after(
                failures, DEFAULTS["PASSWORD_BACKOFF_AFTER"], DEFAULTS["BACKOFF_MAX_SECONDS"]
            )
            or 1
        )  # a guess a second while nothing waits (more than the real loop)
    return count


def test_sc41_a_day_of_a_strangers_guesses_never_keeps_the_user_out(app, clock, evaluated):
    """The finding's simulation: a stranger sends a wrong password for `dave` whenever
    the back-off allows, for 24 hours; dave signs in every 10 minutes from the browser
    he signed in with before. He gets in every time; the stranger still fails every
    time, with no more passwords evaluated than the per-username back-off allows."""
    with app.app_context():
        create_user("dave", PASSWORD)
    dave = Browser(app, clock)
    assert password_attempt(dave, "dave", PASSWORD) == (302, "")  # the sign-in before
    assert trusted_cookie(dave)
    dave.logout()

    start = clock.now()
    end = start + dt.timedelta(seconds=DAY)
    next_dave = start + dt.timedelta(minutes=10)
    next_guess = start
    guesses = dave_ok = dave_tries = 0
    while min(next_dave, next_guess) < end:
        if next_guess <= next_dave:
            clock.advance((next_guess - clock.now()).total_seconds())
            stranger = from_address(Browser(app, clock), ATTACKER_IP)
            status, message = password_attempt(stranger, "dave", f"guess {guesses}")
            guesses += 1
            assert status != 302 and message  # never in
            wait = WAIT_RE.search(message)
            next_guess = clock.now() + dt.timedelta(seconds=int(wait.group(1)) if wait else 1)
        else:
            clock.advance((next_dave - clock.now()).total_seconds())
            dave_tries += 1
            status, message = password_attempt(dave, "dave", PASSWORD)
            if status == 302 and signed_in_as(dave, "dave"):
                dave_ok += 1
            dave.logout()
            next_dave += dt.timedelta(minutes=10)

    assert dave_tries == 143
    assert dave_ok == dave_tries  # every one of his sign-ins
    stranger_evaluated = [pw for name, pw in evaluated if name == "dave" and pw != PASSWORD]
    assert len(stranger_evaluated) <= attacker_evaluations_today(DAY)
    assert len(stranger_evaluated) > DEFAULTS["PASSWORD_BACKOFF_AFTER"]  # it did keep on
    with app.app_context():
        # Dave's right passwords never wiped the stranger's count.
        assert throttle.password_failures("dave") == len(stranger_evaluated)


def test_sc41_a_trusted_browsers_own_wrong_passwords_still_back_off(app, clock):
    trusted, other = Browser(app, clock), Browser(app, clock)
    for browser in (trusted, other):
        assert password_attempt(browser, "alice", PASSWORD)[0] == 302
        browser.logout()
    for n in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"]):
        assert password_attempt(trusted, "alice", f"typo {n}") == (200, WRONG)
    status, message = password_attempt(trusted, "alice", PASSWORD)
    assert "Wait 1 second" in message  # the same rule, on this browser's own counter
    # Neither the username's counter nor alice's other trusted browser is slowed.
    with app.app_context():
        assert throttle.password_failures("alice") == 0
    assert password_attempt(other, "alice", PASSWORD)[0] == 302
    assert password_attempt(Browser(app, clock), "alice", PASSWORD)[0] == 302
    clock.advance(1)
    assert password_attempt(trusted, "alice", PASSWORD)[0] == 302  # and it starts over
    with app.app_context():
        assert {b.failures for b in TrustedBrowser.select()} == {0}


def test_sc41_an_untrusted_browser_of_the_user_still_meets_the_strangers_back_off(app, clock):
    """Expected and documented: a browser that never completed a sign-in shares the
    username's counter with everyone, the stranger included."""
    lock_out(app, "alice")
    _, message = password_attempt(Browser(app, clock), "alice", PASSWORD)
    assert message == "Too many failed sign-ins for this username. Wait 1 second, then try again."


def test_sc41_trust_comes_only_with_a_complete_sign_in(totp_app, clock):
    browser = Browser(totp_app, clock)
    secret = browser.enrol()  # set-up, codes saved: complete
    assert trusted_cookie(browser)
    clock.advance(60)
    pending = Browser(totp_app, clock)
    assert location(pending.login()) == "/mfa/verify"
    assert trusted_cookie(pending) is None  # the password alone earns nothing
    response = pending.post("/mfa/verify", {"code": pending.code(secret)})
    assert location(response) == "/"
    header = next(h for h in response.headers.getlist("Set-Cookie") if "smfa_browser=" in h)
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Max-Age=7776000" in header
    token = trusted_cookie(pending)
    with totp_app.app_context():
        # Only the token's hash is kept; a sign-in from it again renews the same row.
        (row,) = TrustedBrowser.select().where(TrustedBrowser.last_used_at == clock.now())
        assert row.token_hash != token and len(row.token_hash) == 64


@pytest.mark.parametrize("cookie", ["another user's", "forged", "expired", "password changed"])
def test_sc41_a_cookie_of_another_user_forged_or_dead_gives_no_trust(app, clock, cookie):
    browser = Browser(app, clock)
    assert password_attempt(browser, "bob" if cookie == "another user's" else "alice", PASSWORD)
    browser.logout()
    if cookie == "forged":
        browser.client.set_cookie(TRUSTED_BROWSER_COOKIE, "A" * 43)
    elif cookie == "expired":
        clock.advance(DEFAULTS["TRUSTED_BROWSER_DAYS"] * DAY)
    elif cookie == "password changed":
        with app.app_context():
            User.update(password_hash=passwords.hash_password(PASSWORD)).where(
                User.username == "alice"
            ).execute()  # same password, new hash: any change of password revokes
    lock_out(app, "alice")
    _, message = password_attempt(browser, "alice", PASSWORD)
    assert message.startswith("Too many failed sign-ins for this username.")


@pytest.mark.parametrize("how", ["admin reset", "sign out everywhere", "forget devices"])
def test_sc41_revoked_on_the_server_gives_no_trust(totp_app, clock, how):
    browser = Browser(totp_app, clock)
    browser.enrol()
    assert trusted_cookie(browser)
    with totp_app.app_context():
        alice = find_user("alice")
        if how == "admin reset":
            assert reset.reset_totp(alice, actor="root")
        elif how == "sign out everywhere":
            administration.end_sessions(alice, actor="root")
    if how == "forget devices":
        browser.get("/account/security")
        assert location(browser.post("/account/devices/forget")) == "/account/security"
        browser.logout()
    with totp_app.app_context():
        assert TrustedBrowser.select().count() == 0
    lock_out(totp_app, "alice")
    _, message = password_attempt(browser, "alice", PASSWORD)
    assert message.startswith("Too many failed sign-ins for this username.")


def test_sc41_a_password_change_revokes_every_trusted_browser(app, clock):
    browser, other = Browser(app, clock), Browser(app, clock)
    password_attempt(other, "alice", PASSWORD)
    password_attempt(browser, "alice", PASSWORD)
    browser.get("/account/security")
    new = "a brand new passphrase for alice"
    response = browser.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert response.status_code == 302
    with app.app_context():
        assert TrustedBrowser.select().count() == 0
    lock_out(app, "alice")
    _, message = password_attempt(other, "alice", new)
    assert message.startswith("Too many failed sign-ins for this username.")


def test_sc41_the_proof_alone_picks_the_counter(app, clock):
    """`proofs.password` with a live token claims the browser's counter only; without
    one, the address's and the username's."""
    browser = Browser(app, clock)
    password_attempt(browser, "alice", PASSWORD)
    token = trusted_cookie(browser)
    client = proofs.Client("192.0.2.1")
    with app.app_context():
        PasswordThrottle.delete().execute()
        AddressThrottle.delete().execute()
        alice = find_user("alice")
        with proofs.password("alice", alice, "wrong", trusted=token, client=client) as proof:
            assert proof.problem == "wrong_password"
        assert TrustedBrowser.get().failures == 1
        assert PasswordThrottle.select().count() == AddressThrottle.select().count() == 0
        with proofs.password("alice", alice, "wrong", trusted="A" * 43, client=client):
            pass
        assert throttle.password_failures("alice") == 1
        assert throttle.address_failures("192.0.2.1") == 1
        assert TrustedBrowser.get().failures == 1


def test_prune_deletes_expired_trusted_browsers_and_finished_address_hours(app, clock):
    password_attempt(Browser(app, clock), "alice", PASSWORD)
    password_attempt(Browser(app, clock), "bob", "wrong")
    with app.app_context():
        assert maintenance.prune(clock.now())["address_throttles"] == 0
        clock.advance(3600)
        assert maintenance.prune(clock.now())["address_throttles"] == 1
        assert maintenance.prune(clock.now())["trusted_browsers"] == 0
        clock.advance(DEFAULTS["TRUSTED_BROWSER_DAYS"] * DAY)
        assert maintenance.prune(clock.now())["trusted_browsers"] == 1
        assert TrustedBrowser.select().count() == AddressThrottle.select().count() == 0


def test_sc41_re_proving_the_password_on_a_trusted_browser_ignores_a_strangers_guesses(app, clock):
    """Account security's password change (and an administrator's step-up by password)
    re-checks the password on the signed-in browser's own counter: a stranger who put
    the username into its back-off does not slow the user down there."""
    alice = Browser(app, clock)
    assert password_attempt(alice, "alice", PASSWORD)[0] == 302
    assert trusted_cookie(alice)
    lock_out(app, "alice")
    page = alice.page("/account/password")
    assert "current_password" in page
    response = alice.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "a new long passphrase",
            "confirm_password": "a new long passphrase",
        },
    )
    assert location(response) == "/account/security", response.get_data(as_text=True)[:500]
    with app.app_context():
        assert passwords.check_password(find_user("alice"), "a new long passphrase")
    # An administrator's step-up by password: the same, on the trusted browser only.
    trusted_root, untrusted_root = Browser(app, clock), Browser(app, clock)
    for browser in (trusted_root, untrusted_root):
        assert password_attempt(browser, "root", PASSWORD)[0] == 302
    untrusted_root.client.delete_cookie(TRUSTED_BROWSER_COOKIE)
    lock_out(app, "root")
    for browser in (trusted_root, untrusted_root):
        browser.get("/admin/step-up")
        browser.post("/admin/step-up", {"password": PASSWORD})
    # Only the trusted browser's session stepped up; the other was told to wait.
    assert sorted(s.step_up_at is not None for s in sessions_of(app, "root")) == [False, True]
    assert "Wait" in untrusted_root.page("/admin/step-up")


def test_sc41_trust_renews_a_live_cookie_in_one_statement_and_replaces_a_dead_one(app, clock):
    """`trust` renews the browser's own live token for this user (one conditional
    UPDATE); another user's, a dead or a forged one gets a new token instead."""
    from standalone_mfa.core.db import write_transaction
    from standalone_mfa.factors import trusted_browsers

    with app.app_context():
        alice, bob = find_user("alice"), find_user("bob")
        with write_transaction():
            token = trusted_browsers.trust(alice, None, days=30)
            assert trusted_browsers.trust(alice, token, days=30) == token
            assert trusted_browsers.trust(bob, token, days=30) != token
            assert trusted_browsers.trust(alice, "A" * 43, days=30) != "A" * 43
        clock.advance(31 * DAY)
        with write_transaction():
            assert trusted_browsers.trust(alice, token, days=30) != token
        assert TrustedBrowser.select().where(TrustedBrowser.user == alice).count() == 3
