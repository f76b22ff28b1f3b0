"""factors/totp: the code maths, secrets, code input, the window and replay (SC-01 to
SC-05), and set-up, where the server makes and keeps the secret and never leaks it
(SC-20, SC-22)."""

from __future__ import annotations

import base64
import logging
import re
from urllib.parse import quote

import pyotp
import pytest
from support.app import PASSWORD
from support.client import RecordingBrowser, signed_in_as
from support.db import credential_count, credential_secret, failures, raise_on_audit, table_dump
from support.oath import wrong_code
from support.pages import location
from support.steps import pending_setup

from standalone_mfa.core.models import AuditEvent, TotpCredential
from standalone_mfa.factors import totp

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode().rstrip("=")


RFC4226 = ["755224", "287082", "359152", "969429", "338314"]
RFC4226 += ["254676", "287922", "162583", "399871", "520489"]


def _enrolled(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    clock.advance(90)
    person = new_browser()
    person.login()
    return secret, person


def _replays(app):
    with app.app_context():
        return AuditEvent.select().where(AuditEvent.event == "totp_replay").count()


def other_secret(*secrets_in_use) -> str:
    while True:
        secret = pyotp.random_base32(32)
        if secret not in secrets_in_use:
            return secret


EXTERNAL_REF = re.compile(
    r"""(?:\bsrc|\bhref|\baction|\bxlink:href|\bposter|\bdata)\s*=\s*["']?\s*"""
    r"""(?:[a-z][a-z0-9+.-]*:|//|\\)""",
    re.IGNORECASE,
)


def no_store(response) -> bool:
    directives = [d.strip().lower() for d in response.headers.get("Cache-Control", "").split(",")]
    return "no-store" in directives


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
    assert failures(totp_app) == 1


def test_sc03_repeated_code_field_is_rejected(totp_app, browser, new_browser, clock):
    secret, person = _enrolled(totp_app, browser, new_browser, clock)
    good = person.code(secret)
    response = person.client.post(
        "/mfa/verify", data={"code": [good, good], "csrf_token": person.token}
    )
    assert response.headers["Location"] == "/mfa/verify"
    assert failures(totp_app) == 1
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
    from support.app import make_app

    from standalone_mfa.core.config import ConfigurationError

    with pytest.raises(ConfigurationError, match="MFA_TOTP_WINDOW"):
        make_app(tmp_path, clock, MFA_TOTP_WINDOW=3)


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


# --- SC-20 the server makes the secret


def test_sc20_forged_secret_field_does_not_enrol(totp_app, browser, clock):
    browser.login()
    server_secret = browser.setup_secret()
    attacker_secret = other_secret(server_secret)
    forged = {"secret": attacker_secret, "totp_secret": attacker_secret}
    attempts = (("/mfa/setup", forged), ("/mfa/setup?secret=" + attacker_secret, {}))
    for path, extra in attempts:
        response = browser.post(path, {"code": browser.code(attacker_secret), **extra})
        assert location(response) == "/mfa/setup", path
        assert credential_count(totp_app) == 0
        assert not signed_in_as(browser, "alice")

    # Reload: the server's secret, unchanged, and never the attacker's.
    page = browser.page("/mfa/setup?secret=" + attacker_secret)
    assert browser.setup_secret() == server_secret
    assert attacker_secret not in page.replace(" ", "")

    # The server's secret works, and it is what gets stored.
    data = {"code": browser.code(server_secret), **forged}
    assert location(browser.submit_code("/mfa/setup", data)) == "/"
    assert credential_secret(totp_app, "alice") == server_secret


def test_sc20_reload_shows_same_secret_and_wrong_code_does_not_activate(totp_app, browser, clock):
    browser.login()
    secret = browser.setup_secret()
    for _ in range(3):
        clock.advance(40)
        assert browser.setup_secret() == secret
    for bad in (wrong_code(secret, clock), "", "12345", "abcdef"):
        response = browser.post("/mfa/setup", {"code": bad})
        assert location(response) == "/mfa/setup"
        assert credential_count(totp_app) == 0
        assert browser.setup_secret() == secret
    assert not signed_in_as(browser, "alice")
    assert location(browser.submit_code("/mfa/setup", browser.code(secret))) == "/"
    assert credential_secret(totp_app, "alice") == secret


def test_sc20_active_secret_is_never_shown_again(totp_app, browser, new_browser, clock):
    secret = browser.enrol()
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    # Signed in: the set-up page sends the user home, without the secret.
    response = browser.get("/mfa/setup")
    assert response.status_code == 302 and location(response) == "/"
    for page in (browser.page("/"), browser.page("/mfa/setup", follow_redirects=True)):
        assert secret not in page and grouped not in page

    clock.advance(60)
    later = new_browser()
    assert location(later.login()) == "/mfa/verify"
    response = later.get("/mfa/setup")
    assert response.status_code == 302 and location(response) == "/mfa/verify"
    page = later.page("/mfa/verify")
    assert secret not in page and grouped not in page and 'id="totp-secret"' not in page
    # Posting a new "set-up" from the verify state changes nothing.
    new = other_secret(secret)
    response = later.post("/mfa/setup", {"code": later.code(new), "secret": new})
    assert location(response) == "/mfa/verify"
    assert credential_secret(totp_app, "alice") == secret


def test_sc20_second_parallel_setup_cannot_replace_the_first(totp_app, new_browser):
    first, first_secret = pending_setup(new_browser)
    second, second_secret = pending_setup(new_browser)
    assert first_secret != second_secret  # each pending set-up has its own secret
    assert location(first.submit_code("/mfa/setup", first.code(first_secret))) == "/"
    response = second.post("/mfa/setup", {"code": second.code(second_secret)})
    assert location(response) != "/"
    assert not signed_in_as(second, "alice")
    assert credential_secret(totp_app, "alice") == first_secret
    assert credential_count(totp_app) == 1


# --- a database error half-way through a multi-step change


def test_setup_database_error_after_credential_saved_leaves_nothing_half_done(
    totp_app, browser, clock, monkeypatch
):
    browser.login()
    secret = browser.setup_secret()
    raise_on_audit(monkeypatch, "totp_enrolled")
    response = browser.post("/mfa/setup", {"code": browser.code(secret)})
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)
    monkeypatch.undo()
    # The database is back: the user tries again with the next code and is signed in.
    clock.advance(totp.PERIOD)
    browser.get("/mfa/setup")
    response = browser.submit_code("/mfa/setup", {"code": browser.code(secret)})
    assert location(response) == "/"
    assert signed_in_as(browser.client, "alice")
    assert failures(totp_app, "alice") == 0


# --- set-up finished elsewhere


def test_sc20_setup_finished_elsewhere_is_not_a_wrong_code(totp_app, new_browser, clock):
    first, first_secret = pending_setup(new_browser)
    second, second_secret = pending_setup(new_browser)
    assert location(first.submit_code("/mfa/setup", first.code(first_secret))) == "/"
    clock.advance(totp.PERIOD)
    response = second.post("/mfa/setup", {"code": second.code(second_secret)})
    assert location(response) != "/mfa/setup"
    assert failures(totp_app, "alice") == 0


def test_sc20_reloading_setup_after_it_was_finished_elsewhere_shows_no_dead_secret(
    totp_app, new_browser, clock
):
    first, first_secret = pending_setup(new_browser)
    second, second_secret = pending_setup(new_browser)
    assert location(first.submit_code("/mfa/setup", first.code(first_secret))) == "/"
    response = second.get("/mfa/setup")
    assert location(response) == "/mfa/verify"
    page = second.page("/mfa/verify")
    assert "already set up in another window" in page
    assert second_secret not in page.replace(" ", "")
    assert failures(totp_app, "alice") == 0


# --- SC-22 no leakage


def test_sc22_setup_and_verify_are_not_cached(totp_app, new_browser, clock):
    browser, secret = pending_setup(new_browser)
    responses = [
        browser.get("/mfa/setup"),
        browser.post("/mfa/setup", {"code": wrong_code(secret, clock)}),
        browser.post("/mfa/setup", {"code": browser.code(secret)}),
    ]
    clock.advance(60)
    later = new_browser()
    later.login()
    responses += [
        later.get("/mfa/verify"),
        later.post("/mfa/verify", {"code": wrong_code(secret, clock)}),
        later.post("/mfa/verify", {"code": later.code(secret)}),
    ]
    assert [r.status_code for r in responses] == [200, 302, 302, 200, 302, 302]
    for response in responses:
        assert no_store(response), (response.request.path, response.headers)


def test_sc22_setup_page_loads_nothing_from_elsewhere_and_draws_qr_inline(totp_app, browser):
    browser.login()
    page = browser.page("/mfa/setup")
    assert 'id="totp-secret"' in page
    assert not EXTERNAL_REF.findall(page), EXTERNAL_REF.findall(page)
    assert not re.search(r"<(?:img|iframe|object|embed|image)\b", page, re.IGNORECASE)
    assert re.search(r'id="totp-qr"[^>]*>\s*<svg\b', page)
    assert "otpauth://" not in page  # the URI is only inside the QR drawing
    assert "url(" not in page
    # Every script and stylesheet the page loads is our own static file.
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert ref.startswith(("/", "#")) and not ref.startswith("//"), ref


def test_sc22_secret_never_in_headers_cookies_urls_logs_or_audit(totp_app, clock, caplog):
    caplog.set_level(logging.DEBUG)
    browser = RecordingBrowser(totp_app, clock)
    browser.login()
    secret = browser.setup_secret()
    assert browser.setup_secret() == secret
    wrong = wrong_code(secret, clock)
    browser.post("/mfa/setup", {"code": wrong})
    browser.get("/mfa/setup")
    setup_code = browser.code(secret)
    assert location(browser.submit_code("/mfa/setup", setup_code)) == "/"
    browser.get("/")
    browser.logout()
    clock.advance(60)
    browser.login()
    browser.get("/mfa/verify")
    verify_code = browser.code(secret)
    assert location(browser.post("/mfa/verify", {"code": verify_code})) == "/"
    browser.get("/")
    cookie = browser.cookie()

    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    needles = {secret, secret.lower(), grouped, quote(grouped), grouped.replace(" ", "+")}
    seen_setup_page = False
    for method, path, response in browser.seen:
        assert secret not in path
        for name, value in response.headers.items():
            for needle in needles:
                assert needle not in value, f"{method} {path}: secret in {name}"
        body = response.get_data(as_text=True)
        if method == "GET" and path == "/mfa/setup" and response.status_code == 200:
            seen_setup_page = True
            continue  # the one place the secret belongs (checked in its own test)
        for needle in needles:
            assert needle not in body, f"{method} {path}: secret in the body"
    assert seen_setup_page

    # Not in the audit trail, nor in any log line (even at DEBUG), nor in clear text
    # in the credential row.
    audit = table_dump(totp_app, AuditEvent)
    assert "totp_enrolled" in audit  # the trail was written, so the search means something
    logs = "\n".join(
        record.getMessage() + repr(record.args) + str(record.exc_text or "")
        for record in caplog.records
    )
    assert '"totp_enrolled"' in logs
    for text, where in ((audit, "audit_event"), (logs, "logs")):
        for needle in (secret, secret.lower(), grouped, cookie, PASSWORD):
            assert needle not in text, f"found in {where}"
        for code in (wrong, setup_code, verify_code):
            assert not re.search(rf"(?<!\d){code}(?!\d)", text), f"code in {where}"

    credentials = table_dump(totp_app, TotpCredential)
    assert credentials and secret not in credentials and secret.lower() not in credentials
    assert credential_secret(totp_app, "alice") == secret  # encrypted, not lost
    with totp_app.app_context():
        stored = TotpCredential.get().secret_encrypted
    assert secret not in stored
    assert base64.b32encode(base64.b32decode(secret)).decode() not in stored
