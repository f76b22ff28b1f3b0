"""factors/throttle: wrong codes and wrong passwords back off per account, a hard lock
needs an administrator, and the clock or a crowd cannot trick it (SC-07, SC-08)."""

from __future__ import annotations

import concurrent.futures
import re

import pytest
from support.app import PASSWORD
from support.client import together
from support.db import failures
from support.oath import wrong_code
from support.pages import location, messages
from support.steps import pending_verify_with_credential

from standalone_mfa.accounts import reset
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import AuditEvent, MfaThrottle, TotpCredential, User
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import passwords, throttle

WAIT_RE = re.compile(r"Wait (\d+) seconds")


ERROR_MESSAGE_RE = re.compile(r'class="message message-error" role="alert">([^<]+)<')


def _attempt(person, username, password):
    person.get("/login")
    response = person.post("/login", {"username": username, "password": password})
    found = ERROR_MESSAGE_RE.search(response.get_data(as_text=True))
    return response, found.group(1) if found else None


def _fail_times(person, username, times):
    for n in range(times):
        _attempt(person, username, f"wrong guess {n}")


def test_sc07_failures_are_per_account_and_survive_new_logins(
    totp_app, browser, new_browser, clock
):
    secret = browser.enrol()
    clock.advance(60)
    for _ in range(4):
        person = new_browser()  # a fresh session and a correct password each time
        person.login()
        person.post("/mfa/verify", {"code": "000000"})
    assert failures(totp_app) == 4
    person = new_browser()
    person.login()
    person.post("/mfa/verify", {"code": "000000"})
    assert failures(totp_app) == 5
    # The fifth failure ended the pending login: password again.
    assert person.get("/mfa/verify").headers["Location"].startswith("/login")
    # A correct password does not reset the counter; the next try must wait.
    person = new_browser()
    person.login()
    response = person.post("/mfa/verify", {"code": person.code(secret)}, follow_redirects=True)
    assert "Wait 1 second," in response.get_data(as_text=True)
    assert failures(totp_app) == 5
    clock.advance(1)
    person.login()
    assert person.post("/mfa/verify", {"code": person.code(secret)}).headers["Location"] == "/"
    assert failures(totp_app) == 0


def test_sc07_backoff_doubles_and_is_capped(app):
    assert [
        throttle.delay_after(n, DEFAULTS["MFA_BACKOFF_AFTER"], DEFAULTS["BACKOFF_MAX_SECONDS"])
        for n in range(4, 9)
    ] == [0, 1, 2, 4, 8]
    assert (
        throttle.delay_after(20, DEFAULTS["MFA_BACKOFF_AFTER"], DEFAULTS["BACKOFF_MAX_SECONDS"])
        == 15 * 60
    )
    assert (
        throttle.delay_after(49, DEFAULTS["MFA_BACKOFF_AFTER"], DEFAULTS["BACKOFF_MAX_SECONDS"])
        == 15 * 60
    )


def test_sc07_parallel_burst_counts_every_attempt_and_cannot_exceed_limit(totp_app, browser):
    browser.enrol()
    with totp_app.app_context():
        user = User.get(User.username == "alice")

    def attempt(_):
        with totp_app.app_context():
            return throttle.begin_attempt(user).allowed

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(40)))
    # With the clock frozen, only the first five attempts get through, however parallel.
    assert results.count(True) == 5
    assert failures(totp_app) == 5


def test_sc08_while_throttled_the_answer_does_not_depend_on_the_code(
    totp_app, browser, new_browser, clock
):
    secret = browser.enrol()
    clock.advance(60)
    with totp_app.app_context():
        MfaThrottle.update(failures=10, last_failure_at=clock.now()).execute()
    pages = []
    for code in (None, "000000"):
        person = new_browser()
        person.login()
        response = person.post(
            "/mfa/verify", {"code": code or person.code(secret)}, follow_redirects=True
        )
        pages.append(response.get_data(as_text=True).split('name="csrf_token"')[0])
    assert pages[0] == pages[1]
    assert "Wait 32 seconds" in pages[0]
    # The right code sent while throttled was not consumed.
    with totp_app.app_context():
        assert TotpCredential.get().last_used_step < clock.timestamp() // 30
        assert AuditEvent.select().where(AuditEvent.event == "totp_throttled").count() == 2


def test_sc08_backoff_expires_on_its_own(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    clock.advance(60)
    with totp_app.app_context():
        MfaThrottle.update(failures=20, last_failure_at=clock.now()).execute()
    clock.advance(15 * 60)
    person = new_browser()
    person.login()
    assert person.post("/mfa/verify", {"code": person.code(secret)}).headers["Location"] == "/"


def test_sc08_hard_lock_needs_an_admin_and_is_audited(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    with totp_app.app_context():
        MfaThrottle.update(failures=49, last_failure_at=clock.now()).execute()
    clock.advance(3600)
    person = new_browser()
    person.login()
    page = person.post("/mfa/verify", {"code": "000000"}, follow_redirects=True).get_data(
        as_text=True
    )
    assert "locked" in page
    assert failures(totp_app) == 50
    clock.advance(24 * 3600)
    person.login()
    page = person.post("/mfa/verify", {"code": person.code(secret)}, follow_redirects=True)
    assert "Ask an administrator" in page.get_data(as_text=True)
    assert person.get("/").status_code == 302
    with totp_app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "totp_locked").count() == 1
        from standalone_mfa.accounts.reset import reset_totp

        reset_totp(User.get(User.username == "alice"), actor="root")
    assert failures(totp_app) == 0
    person.login()
    assert person.get("/mfa/setup").status_code == 200


@pytest.mark.parametrize("username", ["alice", "nobody-by-this-name"])
def test_sc07_wrong_passwords_back_off_per_username_known_or_not(new_browser, clock, username):
    _fail_times(new_browser(), username, DEFAULTS["PASSWORD_BACKOFF_AFTER"])
    # A fresh browser (new session, new cookie) meets the same counter.
    _, message = _attempt(new_browser(), username, PASSWORD)
    assert message == (
        "Too many failed sign-ins for this username. Wait 1 second, then try again."
    )
    clock.advance(1)
    response, message = _attempt(new_browser(), username, "still wrong")
    assert message == "The username or password is not right."
    # The next one waits twice as long.
    _, message = _attempt(new_browser(), username, PASSWORD)
    assert "Wait 2 seconds" in message


def test_sc07_right_password_after_the_wait_signs_in_and_resets(new_browser, clock, app):
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"])
    clock.advance(1)
    response, _ = _attempt(new_browser(), "alice", PASSWORD)
    assert response.headers["Location"] == "/"
    # Counting starts over: nine more wrong passwords do not throttle.
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"] - 1)
    response, _ = _attempt(new_browser(), "alice", PASSWORD)
    assert response.headers["Location"] == "/"


def test_sc08_while_throttled_the_password_is_not_checked_and_nothing_leaks(
    new_browser, monkeypatch, app
):
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"])
    checked = []
    real_check = passwords.check_password
    monkeypatch.setattr(
        passwords, "check_password", lambda *a: checked.append(1) or real_check(*a)
    )
    answers = {_attempt(new_browser(), "alice", pw)[1] for pw in (PASSWORD, "wrong one")}
    assert checked == []  # refused before the hash was even looked at
    assert len(answers) == 1  # the right and a wrong password get the same answer
    _attempt(new_browser(), "nobody-by-this-name", "x" * 9)
    assert checked == [1]  # another username is checked as usual
    with app.app_context():
        throttled = AuditEvent.select().where(
            (AuditEvent.event == "login") & (AuditEvent.outcome == "throttled")
        )
        assert throttled.count() == 2


def test_sc07_one_username_does_not_throttle_another(new_browser):
    _fail_times(new_browser(), "alice", DEFAULTS["PASSWORD_BACKOFF_AFTER"] + 3)
    response, _ = _attempt(new_browser(), "bob", PASSWORD)
    assert response.headers["Location"] == "/"


def test_username_case_and_spaces_share_one_counter(new_browser):
    for n in range(DEFAULTS["PASSWORD_BACKOFF_AFTER"]):
        _attempt(new_browser(), ["alice", "ALICE", " Alice "][n % 3], f"wrong {n}")
    _, message = _attempt(new_browser(), "alice", PASSWORD)
    assert "Wait" in message


# --- throttle edge cases


def test_sc07_clock_going_back_does_not_throttle_before_five_failures(
    totp_app, new_browser, clock
):
    browser, secret = pending_verify_with_credential(new_browser, totp_app, clock)
    browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    assert failures(totp_app, "alice") == 1
    code = browser.code(secret)  # the code of the step that was current a moment ago
    clock.advance(-5)  # the clock is stepped back, or the next request hits another server
    response = browser.post("/mfa/verify", {"code": code})
    assert location(response) == "/"


def test_sc08_clock_going_back_never_asks_for_more_than_the_cap(totp_app, new_browser, clock):
    browser, secret = pending_verify_with_credential(new_browser, totp_app, clock)
    with totp_app.app_context():
        MfaThrottle.insert(
            user=find_user("alice"), failures=6, last_failure_at=clock.now()
        ).execute()
    clock.advance(-3600)
    response = browser.post("/mfa/verify", {"code": browser.code(secret)}, follow_redirects=True)
    waits = [int(n) for n in WAIT_RE.findall(response.get_data(as_text=True))]
    assert waits, messages(response)
    assert max(waits) <= DEFAULTS["BACKOFF_MAX_SECONDS"]


def test_sc07_many_accounts_failing_at_once_do_not_throttle_each_other(totp_app):
    names = [f"crowd{n}" for n in range(6)]
    with totp_app.app_context():
        users = [create_user(name, PASSWORD) for name in names]

    def four_attempts(user):
        with totp_app.app_context():
            return [throttle.begin_attempt(user).allowed for _ in range(4)]

    results = together(*(lambda u=u: four_attempts(u) for u in users))
    assert results == [[True] * 4] * len(users)
    assert [failures(totp_app, name) for name in names] == [4] * len(users)
    assert failures(totp_app, "alice") == 0


def test_password_guessing_is_limited(app, new_browser):
    browser = new_browser()
    browser.get("/login")
    for n in range(100):
        browser.post("/login", {"username": "alice", "password": f"guess number {n}"})
    response = browser.post("/login", {"username": "alice", "password": PASSWORD})
    assert location(response) != "/"


# --- a reset during a code attempt


def test_sc08_reset_during_a_code_attempt_is_not_a_500(totp_app, new_browser, clock, monkeypatch):
    browser, secret = pending_verify_with_credential(new_browser, totp_app, clock)
    real_get = MfaThrottle.get.__func__
    calls = []

    def get_after_reset(cls, *args, **kwargs):
        if not calls:
            calls.append(1)
            reset.reset_totp(find_user("alice"), actor="root")
        return real_get(cls, *args, **kwargs)

    monkeypatch.setattr(MfaThrottle, "get", classmethod(get_after_reset))
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert response.status_code < 500


# Per client address (SC-42): password spraying, many usernames from one address.

SPRAYER_IP = "198.51.100.7"


def _from(person, ip):
    person.client.environ_base["REMOTE_ADDR"] = ip
    return person


def _spray(new_browser, ip, usernames):
    """One wrong password for each name, each from a fresh browser at `ip`; the
    messages, in order."""
    return [_attempt(_from(new_browser(), ip), name, "Winter2026!")[1] for name in usernames]


@pytest.fixture
def hashed(monkeypatch):
    """The usernames whose password hash was checked, in order (None: unknown)."""
    seen = []
    real = passwords.check_password
    monkeypatch.setattr(
        passwords,
        "check_password",
        lambda user, raw: seen.append(user.username if user else None) or real(user, raw),
    )
    return seen


def test_sc42_spraying_50_usernames_from_one_address_is_cut_off(app, new_browser, hashed):
    limit = DEFAULTS["PASSWORD_IP_BACKOFF_AFTER"]
    names = [f"user{n}" for n in range(50)]
    messages_seen = _spray(new_browser, SPRAYER_IP, names)
    assert len(hashed) == limit  # only the first 30 were evaluated
    assert set(messages_seen[:limit]) == {"The username or password is not right."}
    # The rest: the one generic wait, which never says which counter it was.
    assert set(messages_seen[limit:]) == {
        "Too many failed sign-ins for this username. Wait 1 second, then try again."
    }
    # No username counter moved for the refused ones.
    with app.app_context():
        assert throttle.password_failures("user49") == 0
        assert throttle.address_failures(SPRAYER_IP) == limit  # refused ones are not counted
    # An untrusted browser at that address waits even with a right password...
    assert _attempt(_from(new_browser(), SPRAYER_IP), "alice", PASSWORD)[1].startswith(
        "Too many failed sign-ins"
    )
    # ...while another address is not affected at all.
    response, _ = _attempt(_from(new_browser(), "198.51.100.8"), "alice", PASSWORD)
    assert location(response) == "/"


def test_sc42_the_address_backs_off_like_the_others_and_starts_over_after_an_hour(
    app, new_browser, clock, hashed
):
    limit = DEFAULTS["PASSWORD_IP_BACKOFF_AFTER"]
    _spray(new_browser, SPRAYER_IP, [f"user{n}" for n in range(limit)])
    clock.advance(1)
    assert _spray(new_browser, SPRAYER_IP, ["user-a"]) == [
        "The username or password is not right."
    ]
    assert "Wait 2 seconds" in _spray(new_browser, SPRAYER_IP, ["user-b"])[0]
    clock.advance(3600)  # the hour that began with the first attempt is over
    assert _spray(new_browser, SPRAYER_IP, ["user-c"]) == [
        "The username or password is not right."
    ]
    with app.app_context():
        assert throttle.address_failures(SPRAYER_IP) == 1


def test_sc42_a_right_password_does_not_wipe_the_addresses_failures(app, new_browser):
    """A sprayer with one valid account of their own gains nothing by signing in to it
    between guesses: a right password gives back only its own claim."""
    limit = DEFAULTS["PASSWORD_IP_BACKOFF_AFTER"]
    _spray(new_browser, SPRAYER_IP, [f"user{n}" for n in range(limit - 1)])
    response, _ = _attempt(_from(new_browser(), SPRAYER_IP), "bob", PASSWORD)
    assert location(response) == "/"
    with app.app_context():
        assert throttle.address_failures(SPRAYER_IP) == limit - 1
    assert _spray(new_browser, SPRAYER_IP, ["user-x", "user-y"]) == [
        "The username or password is not right.",
        "Too many failed sign-ins for this username. Wait 1 second, then try again.",
    ]


def test_sc42_trusted_browsers_are_exempt_from_the_address_limit(app, new_browser, hashed):
    alice = _from(new_browser(), SPRAYER_IP)
    response, _ = _attempt(alice, "alice", PASSWORD)  # a complete sign-in: now trusted
    assert location(response) == "/"
    alice.logout()
    _spray(new_browser, SPRAYER_IP, [f"user{n}" for n in range(50)])
    with app.app_context():
        before = throttle.address_failures(SPRAYER_IP)
    response, _ = _attempt(alice, "alice", PASSWORD)
    assert location(response) == "/"
    alice.logout()
    _, message = _attempt(alice, "alice", "a typo")
    assert message == "The username or password is not right."  # evaluated, own counter
    with app.app_context():
        assert throttle.address_failures(SPRAYER_IP) == before  # not counted there


@pytest.mark.parametrize("proxy_fix", [0, 1])
def test_sc42_the_address_is_the_one_proxyfix_decides(tmp_path, clock, proxy_fix):
    """Behind a trusted proxy (`PROXY_FIX_X_FOR=1`) each X-Forwarded-For address has
    its own count; without one the header is ignored, so a sprayer who makes one up
    for each guess is still one address."""
    from support.app import make_app
    from support.client import Browser

    app = make_app(tmp_path, clock, PROXY_FIX_X_FOR=proxy_fix, PASSWORD_IP_BACKOFF_AFTER=3)
    messages_seen = []
    for n in range(5):
        person = Browser(app, clock)
        person.client.environ_base["HTTP_X_FORWARDED_FOR"] = f"192.0.2.{n + 1}"
        messages_seen.append(_attempt(person, f"user{n}", "wrong")[1])
    throttled = [m for m in messages_seen if m.startswith("Too many")]
    assert len(throttled) == (0 if proxy_fix else 2)
    with app.app_context():
        assert throttle.address_failures("192.0.2.1") == (1 if proxy_fix else 0)
        assert throttle.address_failures("127.0.0.1") == (0 if proxy_fix else 3)


def test_sc42_an_ipv6_client_counts_as_its_64_network():
    key = throttle.address_key
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert key("2001:db8:1:2::1") != key("2001:db8:1:3::1")
    assert key("::ffff:192.0.2.1") == key("192.0.2.1")
    assert key("192.0.2.1") != key("192.0.2.2")
