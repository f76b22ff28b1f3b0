"""The verifier: known answers, secrets, code input, the window, replay and the
per-account throttle (SC-01 to SC-05, SC-07, SC-08)."""

from __future__ import annotations

import base64
import concurrent.futures

import pytest

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import AuditEvent, MfaThrottle, TotpCredential, User
from standalone_mfa.factors import throttle, totp

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode().rstrip("=")


@pytest.mark.parametrize(
    ("for_time", "code"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_sc01_rfc6238_appendix_b_sha1(for_time, code):
    step = for_time // 30
    assert totp.match_step(RFC_SECRET, code, for_time=for_time, window=0, digits=8) == step
    # One digit off, or the same code a step later, does not match.
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert totp.match_step(RFC_SECRET, wrong, for_time=for_time, window=0, digits=8) is None
    assert totp.match_step(RFC_SECRET, code, for_time=for_time + 30, window=0, digits=8) is None


RFC4226 = ["755224", "287082", "359152", "969429", "338314"]
RFC4226 += ["254676", "287922", "162583", "399871", "520489"]


@pytest.mark.parametrize(("counter", "code"), list(enumerate(RFC4226)))
def test_sc01_rfc4226_appendix_d_through_the_clock(counter, code):
    # TOTP is HOTP with counter = time // 30: counter c is the clock at 30c seconds.
    assert totp.match_step(RFC_SECRET, code, for_time=30 * counter + 29, window=0) == counter


def test_sc01_leading_zero_is_kept():
    assert totp.match_step(RFC_SECRET, "07081804", for_time=1111111109, window=0, digits=8)
    assert totp.match_step(RFC_SECRET, "7081804", for_time=1111111109, window=0, digits=8) is None


def test_sc02_secret_generation():
    secrets_seen = {totp.new_secret() for _ in range(1000)}
    assert len(secrets_seen) == 1000
    for secret in secrets_seen:
        assert "=" not in secret
        assert len(base64.b32decode(secret)) * 8 >= 160


def test_sc02_enrolment_secrets_differ_per_login(totp_app, new_browser):
    seen = set()
    for _ in range(5):
        person = new_browser()
        person.login()
        seen.add(person.setup_secret())
    assert len(seen) == 5


@pytest.mark.parametrize(
    "raw",
    ["", "12345", "1234567", "abcdef", "+12345", "١٢٣٤٥٦", "12 345", "x" * 10_000, "12345\n6\n7"],
)
def test_sc03_normalize_rejects_malformed(raw):
    assert totp.normalize_code(raw) is None


@pytest.mark.parametrize(
    ("raw", "code"),
    [("123 456", "123456"), ("123-456", "123456"), (" 12 34 56 ", "123456"), ("123456", "123456")],
)
def test_sc03_spaces_and_dashes_are_stripped(raw, code):
    assert totp.normalize_code(raw) == code


def _enrolled(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    clock.advance(90)
    person = new_browser()
    person.login()
    return secret, person


def _failures(app, username="alice"):
    with app.app_context():
        return throttle.failures(User.get(User.username == username))


@pytest.mark.parametrize(
    "bad",
    ["", "12345", "1234567", "abcdef", "+12345", "١٢٣٤٥٦", "x" * 10_000],
)
def test_sc03_bad_code_input_one_generic_rejection_counted(
    totp_app, browser, new_browser, clock, bad
):
    _, person = _enrolled(totp_app, browser, new_browser, clock)
    response = person.post("/mfa/verify", {"code": bad}, follow_redirects=True)
    assert response.status_code == 200
    assert "That code is not right" in response.get_data(as_text=True)
    assert _failures(totp_app) == 1


def test_sc03_repeated_code_field_is_rejected(totp_app, browser, new_browser, clock):
    secret, person = _enrolled(totp_app, browser, new_browser, clock)
    good = person.code(secret)
    response = person.client.post(
        "/mfa/verify", data={"code": [good, good], "csrf_token": person.token}
    )
    assert response.headers["Location"] == "/mfa/verify"
    assert _failures(totp_app) == 1
    # The code was not consumed by the rejected request.
    assert person.post("/mfa/verify", {"code": good}).headers["Location"] == "/"


def test_sc03_huge_body_is_refused_without_500(totp_app, browser, new_browser, clock):
    _, person = _enrolled(totp_app, browser, new_browser, clock)
    response = person.post("/mfa/verify", {"code": "1" * 200_000})
    assert response.status_code == 413


def test_sc03_dashed_code_accepted(totp_app, browser, new_browser, clock):
    secret, person = _enrolled(totp_app, browser, new_browser, clock)
    code = person.code(secret)
    response = person.post("/mfa/verify", {"code": f"{code[:3]}-{code[3:]}"})
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    ("steps", "accepted"), [(0, True), (-1, True), (1, True), (-2, False), (2, False)]
)
def test_sc04_window_default_one_step(totp_app, browser, new_browser, clock, steps, accepted):
    secret, person = _enrolled(totp_app, browser, new_browser, clock)
    response = person.post("/mfa/verify", {"code": person.code(secret, steps)})
    assert (response.headers["Location"] == "/") is accepted


@pytest.mark.parametrize(
    ("window", "steps", "accepted"),
    [(0, 0, True), (0, -1, False), (0, 1, False), (2, -2, True), (2, 2, True), (2, 3, False)],
)
def test_sc04_window_is_configurable(window, steps, accepted):
    now = 1_800_000_000
    import pyotp

    code = pyotp.TOTP(RFC_SECRET).at(now + 30 * steps)
    matched = totp.match_step(RFC_SECRET, code, for_time=now, window=window)
    assert (matched is not None) is accepted


def test_sc04_window_outside_zero_to_two_refused(tmp_path, clock):
    from conftest import make_app

    from standalone_mfa.core.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="MFA_TOTP_WINDOW"):
        make_app(tmp_path, clock, MFA_TOTP_WINDOW=3)


def _replays(app):
    with app.app_context():
        return AuditEvent.select().where(AuditEvent.event == "totp_replay").count()


def test_sc05_same_code_twice_in_one_step(totp_app, browser, new_browser, clock):
    secret, first = _enrolled(totp_app, browser, new_browser, clock)
    code = first.code(secret)
    assert first.post("/mfa/verify", {"code": code}).headers["Location"] == "/"
    second = new_browser()
    second.login()
    response = second.post("/mfa/verify", {"code": code})
    assert response.headers["Location"] == "/mfa/verify"
    assert second.get("/").status_code == 302
    assert _replays(totp_app) == 1


def test_sc05_enrolment_code_cannot_log_in(totp_app, browser, new_browser, clock):
    browser.login()
    secret = browser.setup_secret()
    code = browser.code(secret)
    assert browser.submit_code("/mfa/setup", code).headers["Location"] == "/"
    other = new_browser()
    other.login()
    assert other.post("/mfa/verify", {"code": code}).headers["Location"] == "/mfa/verify"
    assert _replays(totp_app) == 1


def test_sc05_older_step_after_newer_one_refused(totp_app, browser, new_browser, clock):
    secret, first = _enrolled(totp_app, browser, new_browser, clock)
    assert first.post("/mfa/verify", {"code": first.code(secret)}).headers["Location"] == "/"
    second = new_browser()
    second.login()
    response = second.post("/mfa/verify", {"code": second.code(secret, -1)})
    assert response.headers["Location"] == "/mfa/verify"
    assert _replays(totp_app) == 1


def test_sc05_consume_step_is_one_conditional_update(totp_app, browser):
    browser.enrol()
    with totp_app.app_context():
        credential = TotpCredential.get()
        step = credential.last_used_step
        assert not totp.consume_step(credential, step)
        assert totp.consume_step(credential, step + 1)
        assert not totp.consume_step(credential, step + 1)
        assert TotpCredential.get().last_used_step == step + 1


def test_sc07_failures_are_per_account_and_survive_new_logins(
    totp_app, browser, new_browser, clock
):
    secret = browser.enrol()
    clock.advance(60)
    for _ in range(4):
        person = new_browser()  # a fresh session and a correct password each time
        person.login()
        person.post("/mfa/verify", {"code": "000000"})
    assert _failures(totp_app) == 4
    person = new_browser()
    person.login()
    person.post("/mfa/verify", {"code": "000000"})
    assert _failures(totp_app) == 5
    # The fifth failure ended the pending login: password again.
    assert person.get("/mfa/verify").headers["Location"].startswith("/login")
    # A correct password does not reset the counter; the next try must wait.
    person = new_browser()
    person.login()
    response = person.post("/mfa/verify", {"code": person.code(secret)}, follow_redirects=True)
    assert "Wait 1 second," in response.get_data(as_text=True)
    assert _failures(totp_app) == 5
    clock.advance(1)
    person.login()
    assert person.post("/mfa/verify", {"code": person.code(secret)}).headers["Location"] == "/"
    assert _failures(totp_app) == 0


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
    assert _failures(totp_app) == 5


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
    assert _failures(totp_app) == 50
    clock.advance(24 * 3600)
    person.login()
    page = person.post("/mfa/verify", {"code": person.code(secret)}, follow_redirects=True)
    assert "Ask an administrator" in page.get_data(as_text=True)
    assert person.get("/").status_code == 302
    with totp_app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "totp_locked").count() == 1
        from standalone_mfa.accounts.reset import reset_totp

        reset_totp(User.get(User.username == "alice"), actor="root")
    assert _failures(totp_app) == 0
    person.login()
    assert person.get("/mfa/setup").status_code == 200
