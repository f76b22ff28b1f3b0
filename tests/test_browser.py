"""The product in a real browser: Debian's Chromium, driven by Playwright, against the
app served by gunicorn (a real process, on the real clock) from a temporary instance
folder on 127.0.0.1. Codes come from oathtool, the set-up QR code is read back from
Chromium screenshots by zbarimg, and axe-core checks every page in light and dark mode.

One server and one browser serve the whole module; each test opens fresh browser
contexts (cookie jars) and, to stay clear of TOTP replay protection, fresh users; no
flow needs more codes of one key than the window accepts at once, so none waits.
With SCREENSHOTS_DIR set (`make screenshots`) the main pages are also saved as PNGs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from conftest import FAST_HASH, PASSWORD
from helpers import oathtool_codes, tool
from playwright.sync_api import Page, expect, sync_playwright

from standalone_mfa import create_app
from standalone_mfa.accounts import reset
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent, MfaThrottle, User, WebSession
from standalone_mfa.core.pagination import PER_PAGE
from standalone_mfa.directory import settings, tokens
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import recovery, totp
from standalone_mfa.instance import write_config
from standalone_mfa.ops import schema

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
AXE_JS = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR")
STARTUP_TIMEOUT = 30  # seconds for gunicorn to answer its first request
ACTION_TIMEOUT_MS = 10_000  # a stuck page fails the test instead of hanging it
MOBILE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
ISSUER = "Standalone MFA"  # the default MFA_ISSUER the server runs with

WRONG_PASSWORD = "The username or password is not right."
WRONG_CODE = "That code is not right"
CODE_LABEL = "6-digit code from your authenticator app"
SECRET_FORMAT = re.compile(r"(?:[A-Z2-7]{4} ){7}[A-Z2-7]{4}")
RECOVERY_FORMAT = re.compile(r"[a-z2-7]{4}(?:-[a-z2-7]{4}){3}")  # 80 bits, as shown
WRONG_RECOVERY_CODE = "That recovery code is not right, or it was already used."
SET_UP = "Your authenticator app is set up."
NEW_PASSWORD = "a new and longer passphrase"


# ------------------------------------------------------------------ the authenticator


# A code of the step before now is still sent this long before that step leaves the
# window: plenty for a loaded machine to get from oathtool to the server.
SLOW_CLOCK_MARGIN = 12


def current_step() -> int:
    return int(time.time()) // totp.PERIOD


@dataclass
class Account:
    """A user of the site, and the authenticator app on their phone."""

    username: str
    is_admin: bool = False
    secret: str | None = None
    last_step: int = -1  # the newest time step this test has had accepted
    recovery_codes: tuple[str, ...] = ()  # as last shown, formatted

    def fresh_code(self) -> str:
        """A code for a time step this account has not used yet: the oldest the default
        window accepts (one step either side of now, like a phone whose clock is a
        little slow or fast). The step before is taken only while it stays accepted for
        another SLOW_CLOCK_MARGIN seconds. If all are used, wait for the next step."""
        assert self.secret, f"{self.username} has no authenticator yet"
        while True:
            now = time.time()
            step = int(now) // totp.PERIOD
            oldest = (
                step - 1 if now - step * totp.PERIOD < totp.PERIOD - SLOW_CLOCK_MARGIN else step
            )
            pick = max(oldest, self.last_step + 1)
            if pick <= step + 1:
                break
            time.sleep((step + 1) * totp.PERIOD - now + 0.05)
        self.last_step = pick
        return oathtool_codes(self.secret, pick, 1)[0]

    def code_of(self, secret: str) -> str:
        """The current code of another key (such as the one this account moved away from)."""
        return oathtool_codes(secret, current_step(), 1)[0]

    def wrong_code(self) -> str:
        """A well-formed code that is right for none of the steps near now."""
        near = set(oathtool_codes(self.secret, current_step() - 2, 5)) if self.secret else set()
        return next(c for c in (d * 6 for d in "0123456789") if c not in near)


# ----------------------------------------------------------------------- the server


NAMES = (
    *("ada", "grace", "alan", "barbara", "edsger", "frances", "ken", "margaret", "dennis"),
    *("radia", "donald", "hedy", "john", "karen", "leslie", "lynn", "niklaus", "mary"),
    *("tony", "annie", "whitfield", "sophie", "vint", "jean", "linus", "adele", "guido"),
    *("evelyn", "bjarne", "kathleen", "dana", "ida", "ralph", "shafi", "tim", "joan"),
    *("butler", "carol", "martin", "susan", "ward", "marian", "niels", "ivan", "betty"),
)


class Site:
    """The app in a gunicorn process, plus an in-process app on the same database for
    what an administrator does outside the browser (users, tokens, the setting)."""

    def __init__(self, root: Path):
        self.root = root
        self.instance = root / "instance"
        self.instance.mkdir()
        config = self.instance / "config.py"
        write_config(config)  # what `make run` writes: new keys
        with open(config, "a") as extra:  # hashing speed is not what these tests are about
            extra.write(f"PASSWORD_HASH_METHOD = {FAST_HASH!r}\n")
        # The factory with the temporary instance folder; its SQLite file lives there.
        self.app_spec = f"standalone_mfa:create_app(instance_path={str(self.instance)!r})"
        self.app = create_app(instance_path=str(self.instance))
        with self.app.app_context():
            schema.upgrade()  # what `make run` does (init-db)
        self.log_path = root / "server.log"
        # Readable usernames (they show in the screenshots), each used once.
        self._names = (f"{name}{n or ''}" for n in itertools.count() for name in NAMES)
        self._token: str | None = None
        self.secrets_seen: list[str] = []
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        # The test binds the port (0: any free one) and hands the socket to gunicorn.
        with socket.create_server(("127.0.0.1", 0)) as listener, open(self.log_path, "wb") as log:
            fd = listener.fileno()
            os.set_inheritable(fd, True)
            self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}"),
                    *("--workers", "2", "--threads", "4", "--graceful-timeout", "5"),
                    self.app_spec,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                env=env,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with requests.Session() as http:
            http.trust_env = False
            while True:
                assert self.process.poll() is None, f"gunicorn exited:\n{self.log()}"
                try:
                    if http.get(self.url + "/login", timeout=5).status_code == 200:
                        return
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, f"gunicorn did not answer:\n{self.log()}"
                time.sleep(0.1)  # polling for readiness, not waiting for an outcome

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        with self.app.app_context():
            db.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def new_name(self) -> str:
        """A username no one has yet (for a user the test creates in the browser)."""
        return next(self._names)

    def new_account(
        self, *, admin: bool = False, enrolled: bool = False, name: str | None = None
    ) -> Account:
        """A new user; `enrolled`: with an authenticator already set up (last used two
        steps ago, so every code in the window is fresh) and no recovery codes."""
        account = Account(name or self.new_name(), is_admin=admin)
        with self.app.app_context():
            user = create_user(account.username, PASSWORD, is_admin=admin)
            if enrolled:
                account.secret = totp.new_secret()
                account.last_step = current_step() - 2
                assert totp.enrol(user, account.secret, account.last_step) is not None
        return account

    def set_mfa_method(self, method: str) -> None:
        with self.app.app_context():
            settings.set_mfa_method(method, actor="browser-tests")

    def mfa_method(self) -> str:
        with self.app.app_context():
            return settings.mfa_method()

    def set_remember_days(self, days: int) -> None:
        with self.app.app_context():
            settings.set_remember_days(days, actor="browser-tests")

    def remember_days(self) -> int:
        with self.app.app_context():
            return settings.remember_days()

    def give_recovery_codes(self, account: Account) -> None:
        with self.app.app_context():
            account.recovery_codes = tuple(recovery.replace_codes(find_user(account.username)))

    def spend_recovery_codes(self, account: Account, codes) -> None:
        with self.app.app_context():
            user = find_user(account.username)
            assert all(recovery.spend(user, code) for code in codes)

    def reset_in_process(self, account: Account) -> None:
        with self.app.app_context():
            assert reset.reset_totp(find_user(account.username), actor="browser-tests")

    def backdate_pending_sign_in(self, account: Account, seconds: int) -> None:
        """Make the account's pending sign-in `seconds` older, as if time had passed."""
        with self.app.app_context():
            since = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=seconds)
            updated = (
                WebSession.update(state_since=since)
                .where(
                    (WebSession.user == find_user(account.username))
                    & WebSession.state.in_(("totp_setup", "totp_verify"))
                )
                .execute()
            )
        assert updated == 1

    def backdate_sessions(self, account: Account, days: int) -> None:
        """Every session of the account started and was last seen `days` ago."""
        with self.app.app_context():
            then = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=days)
            WebSession.update(created_at=then, last_seen_at=then).where(
                WebSession.user == find_user(account.username)
            ).execute()

    def throttle_codes(self, account: Account, failures: int) -> None:
        """As if the account had just typed `failures` wrong codes in a row."""
        with self.app.app_context():
            user = find_user(account.username)
            at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            MfaThrottle.delete().where(MfaThrottle.user == user).execute()
            MfaThrottle.create(user=user, failures=failures, last_failure_at=at)

    def backdate_step_up(self, account: Account, seconds: int) -> None:
        """The account's step-up (on each of its sessions) happened `seconds` earlier."""
        with self.app.app_context():
            sessions = WebSession.select().where(
                (WebSession.user == find_user(account.username))
                & WebSession.step_up_at.is_null(False)
            )
            for web_session in sessions:
                web_session.step_up_at -= dt.timedelta(seconds=seconds)
                web_session.save(only=[WebSession.step_up_at])

    def has_user(self, username: str) -> bool:
        with self.app.app_context():
            return find_user(username) is not None

    def is_admin(self, account: Account) -> bool:
        with self.app.app_context():
            return find_user(account.username).is_admin

    @contextlib.contextmanager
    def sole_admin(self, account: Account):
        """For the duration, `account` is the only administrator: the others' rights are
        taken away in the database and given back afterwards."""
        with self.app.app_context():
            others = [
                user.id
                for user in User.select(User.id).where(
                    User.is_admin & (User.username != account.username)
                )
            ]
            User.update(is_admin=False).where(User.id.in_(others)).execute()
        try:
            yield
        finally:
            with self.app.app_context():
                User.update(is_admin=True).where(User.id.in_(others)).execute()

    def add_users(self, prefix: str, count: int) -> None:
        """`count` users named prefix.001 and on, created by "browser-tests"."""
        with self.app.app_context():
            for n in range(1, count + 1):
                create_user(f"{prefix}.{n:03}", PASSWORD, actor="browser-tests")

    def audit_events(self, event: str) -> list[AuditEvent]:
        with self.app.app_context():
            return list(AuditEvent.select().where(AuditEvent.event == event))

    def api_token(self) -> str:
        """A bearer token of an administrator (made once, as `token create` would)."""
        if self._token is None:
            admin = self.new_account(admin=True)
            with self.app.app_context():
                self._token = tokens.create_token(find_user(admin.username), actor="cli")
        return self._token

    def api_reset(self, account: Account) -> requests.Response:
        with requests.Session() as http:
            http.trust_env = False
            return http.delete(
                f"{self.url}/api/v1/users/{account.username}/totp",
                headers={"Authorization": f"Bearer {self.api_token()}"},
                timeout=30,
            )

    def flask(self, *args: str) -> subprocess.CompletedProcess:
        """The real command line, in its own process, against the running site."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", self.app_spec, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("browser-site"))
    site.set_mfa_method("totp")
    try:
        site.start()
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="module")
def chromium(site):
    """One headless Chromium for the module (closed before the server stops)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


# ---------------------------------------------------------------------- the person


class Person:
    """One person at one browser window: steps read like what they do."""

    def __init__(self, site: Site, page: Page):
        self.site = site
        self.page = page
        self.console_errors: list[str] = []
        self.just_signed_out = False  # the window shows a fresh sign-in form
        self.saved_sessions: dict[bool, tuple[Account, list]] = {}  # admin? -> cookies
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def goto(self, path: str) -> None:
        self.just_signed_out = False
        self.page.goto(path)

    def expect_path(self, path: str) -> None:
        """The address bar shows `path` (any query string), once that page has loaded.
        Waits on the browser's navigation events, not by polling the address."""
        self.page.wait_for_url(re.compile(re.escape(self.site.url + path) + r"(\?.*)?$"))

    def sign_in(self, account: Account, password: str = PASSWORD) -> None:
        """On the sign-in page: opened, unless signing out just showed it."""
        if not self.just_signed_out:
            self.goto("/login")
        self.just_signed_out = False
        self.page.get_by_label("Username").fill(account.username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()

    def read_secret(self, account: Account) -> str:
        """Read the set-up key as a person would type it into their app."""
        shown = self.page.locator("#totp-secret").inner_text()
        assert SECRET_FORMAT.fullmatch(shown), f"secret not in groups of four: {shown!r}"
        account.secret = shown.replace(" ", "")
        account.last_step = -1  # a new credential: no step used yet
        self.site.secrets_seen.append(account.secret)
        return account.secret

    def enter_code(self, code: str) -> None:
        self.page.get_by_label(CODE_LABEL).fill(code)
        self.page.get_by_role("button", name=re.compile(r"^(Confirm and sign in|Verify)$")).click()

    def set_up(self, account: Account) -> None:
        """On the set-up page: add the key to the app, type its code, keep the recovery
        codes shown once; lands at home."""
        self.confirm_set_up(account)
        self.save_recovery_codes()
        self.expect_path("/")
        self.expect_signed_in(account)

    def confirm_set_up(self, account: Account) -> tuple[str, ...]:
        """From the set-up page to the recovery codes it ends with."""
        self.expect_path("/mfa/setup")
        self.read_secret(account)
        self.enter_code(account.fresh_code())
        self.expect_path("/mfa/recovery-codes")
        expect(self.page.get_by_role("status")).to_contain_text(SET_UP)
        return self.read_recovery_codes(account)

    def read_recovery_codes(self, account: Account) -> tuple[str, ...]:
        """The codes page: ten different codes, each xxxx-xxxx-xxxx-xxxx."""
        self.expect_path("/mfa/recovery-codes")
        expect(self.page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
        codes = tuple(
            self.page.locator("#recovery-codes").get_by_role("listitem").all_inner_texts()
        )
        assert len(set(codes)) == 10, codes
        assert all(RECOVERY_FORMAT.fullmatch(c) for c in codes), codes
        account.recovery_codes = codes
        return codes

    def save_recovery_codes(self) -> None:
        self.page.get_by_role("button", name="I have saved these codes").click()

    def use_recovery_code(self, code: str) -> None:
        """From the code step: "Use a recovery code instead", then the code."""
        self.expect_path("/mfa/verify")
        self.page.get_by_role("link", name="Use a recovery code instead").click()
        self.expect_path("/mfa/recovery")
        self.page.get_by_label("Recovery code").fill(code)
        self.page.get_by_role("button", name="Verify").click()

    def open_account_security(self) -> None:
        """Through the header link, as a person finds it."""
        self.page.locator("header").get_by_role("link", name="Account security").click()
        self.expect_path("/account/security")

    def confirm_identity(self, password: str, *, code: str = "", recovery_code: str = "") -> None:
        self.page.get_by_label("Your password").fill(password)
        self.page.get_by_label(CODE_LABEL).fill(code)
        if recovery_code:
            self.page.get_by_label("Or a recovery code").fill(recovery_code)
        self.page.get_by_role("button", name="Continue").click()

    def sign_in_with_code(self, account: Account) -> None:
        self.sign_in(account)
        self.expect_path("/mfa/verify")
        self.enter_code(account.fresh_code())
        self.expect_path("/")
        self.expect_signed_in(account)

    def sign_out(self) -> None:
        self.page.locator("header").get_by_role("button", name="Sign out").click()
        self.expect_path("/login")
        expect(self.page.get_by_role("status")).to_have_text("You have signed out.")
        self.just_signed_out = True

    def expect_signed_in(self, account: Account) -> None:
        expect(self.page.locator("#signed-in-user")).to_have_text(account.username)

    def expect_status(self, text: str) -> None:
        """A message, announced politely (role="status"); the page may show others."""
        expect(self.page.get_by_role("status").filter(has_text=text)).to_have_count(1)

    def expect_alert(self, text: str) -> None:
        """An error, announced: role="alert" makes screen readers read it at once (the
        page may announce more than one, such as a field's error and the page's)."""
        expect(self.page.get_by_role("alert").filter(has_text=text)).to_have_count(1)

    def step_up(self, admin: Account) -> None:
        """On the step-up page: a fresh code from the administrator's own app (their
        password if they have none)."""
        self.expect_path("/admin/step-up")
        field = self.page.get_by_label(CODE_LABEL if admin.secret else "Your password")
        expect(field).to_be_focused()
        field.fill(admin.fresh_code() if admin.secret else PASSWORD)
        self.page.get_by_role("button", name="Confirm").click()

    def change_mfa_settings(
        self, admin: Account, method: str | None = None, remember_days: str | None = None
    ) -> None:
        """On /admin/mfa: choose the method (its label) and the days, and Save. Without
        a fresh step-up the change is refused: prove it is you, back to the form, which
        shows the saved values again, so choose and Save once more."""

        def fill_and_save() -> None:
            self.expect_path("/admin/mfa")
            if method is not None:
                self.page.get_by_label("Multi-Factor Authentication method").select_option(
                    label=method
                )
            if remember_days is not None:
                self.page.get_by_label("Remember devices for N days").fill(remember_days)
            self.page.get_by_role("button", name="Save").click()

        fill_and_save()
        if self.page.url.startswith(self.site.url + "/admin/step-up"):
            self.expect_alert("Confirm it is you, then confirm the change again.")
            self.step_up(admin)
            fill_and_save()

    def search_users(self, term: str) -> None:
        """On the Users page: search by username."""
        self.page.get_by_label("Search by username").fill(term)
        self.page.get_by_role("button", name="Search").click()
        expect(self.page.locator("main table caption")).to_contain_text(f"matching “{term}”")

    def user_row(self, account: Account):
        """The Users page's row of this account (by its name exactly)."""
        name = self.page.get_by_role("rowheader", name=account.username, exact=True)
        return self.page.locator("main tbody tr").filter(has=name)

    def act_on_user(self, action: str, account: Account) -> None:
        """From the Users page: the action's link in the account's row."""
        self.page.get_by_role("link", name=f"{action}: {account.username}", exact=True).click()

    def filter_audit(self, *, user: str | None = None, event: str | None = None) -> None:
        """On the Audit log: change the filters given, keep the others, press Filter."""
        if user is not None:
            self.page.get_by_label("User").fill(user)
        if event is not None:
            self.page.get_by_label("Event type").select_option(event)
        query = urlencode(
            {
                "user": self.page.get_by_label("User").input_value(),
                "event": self.page.get_by_label("Event type").input_value(),
            }
        )
        self.page.get_by_role("button", name="Filter").click()
        self.page.wait_for_url(re.compile(re.escape(f"{self.site.url}/admin/audit?{query}&")))

    def screenshot(self, name: str, *, full_page: bool = True) -> None:
        if SCREENSHOTS_DIR:
            Path(SCREENSHOTS_DIR).mkdir(parents=True, exist_ok=True)
            path = Path(SCREENSHOTS_DIR) / f"{name}.png"
            self.page.screenshot(path=str(path), full_page=full_page)


@pytest.fixture
def open_window(site, chromium):
    """open_window(**context options) -> a Person in a new browser context."""
    contexts = []

    def open_(**options) -> Person:
        context = chromium.new_context(base_url=site.url, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        return Person(site, context.new_page())

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def javascript(request) -> bool:
    """The flows run twice: as most people use the site, and with JavaScript off."""
    return request.param


@pytest.fixture
def totp_on(site):
    if site.mfa_method() != "totp":
        site.set_mfa_method("totp")


# ---------------------------------------------------------------------------- flows


def test_first_sign_in_sets_up_then_signs_out_and_in_with_a_code(
    site, open_window, javascript, totp_on
):
    account = site.new_account()
    person = open_window(java_script_enabled=javascript)

    person.sign_in(account)
    person.expect_path("/mfa/setup")
    expect(person.page.get_by_role("heading", level=1)).to_have_text(
        "Set up Multi-Factor Authentication"
    )
    # The copy button is a script's nicety: shown only where the script runs.
    copy = person.page.get_by_role("button", name="Copy")
    if javascript:
        expect(copy).to_be_visible()
    else:
        expect(copy).to_be_hidden()
    person.set_up(account)  # "Your authenticator app is set up", on the codes page

    person.sign_out()
    person.goto("/")
    person.expect_path("/login")  # the old session is gone

    person.sign_in(account)
    person.expect_path("/mfa/verify")
    # Off by default: no "Remember this device" until an administrator allows it.
    expect(person.page.get_by_label(re.compile("Remember this device"))).to_have_count(0)
    person.enter_code(account.wrong_code())
    person.expect_path("/mfa/verify")
    person.expect_alert(WRONG_CODE)
    expect(person.page.get_by_label(CODE_LABEL)).to_be_focused()
    expect(person.page.get_by_label(CODE_LABEL)).to_have_value("")

    person.enter_code(account.fresh_code())
    person.expect_path("/")
    person.expect_signed_in(account)
    assert person.console_errors == []  # no CSP violation, no script error


def test_admin_switches_between_disabled_and_totp(site, open_window, javascript):
    site.set_mfa_method("disabled")
    try:
        admin = site.new_account(admin=True)
        user = site.new_account()
        person = open_window(java_script_enabled=javascript)

        person.sign_in(admin)  # Disabled: the password is enough
        person.expect_path("/")
        person.page.get_by_role("link", name="Administration").first.click()
        person.expect_path("/admin/")
        expect(person.page.get_by_role("heading", name="Users and Permissions")).to_be_visible()
        person.page.get_by_role("link", name="Multi-Factor Authentication").click()
        person.expect_path("/admin/mfa")
        method = person.page.get_by_label("Multi-Factor Authentication method")
        expect(method.locator("option")).to_have_text(["Disabled", "TOTP"])
        expect(method).to_have_value("disabled")

        # Saving needs a step-up first (the password: the admin has no authenticator yet).
        person.change_mfa_settings(admin, method="TOTP")
        # The admin's own password-only session ends with the change.
        person.expect_path("/login")
        person.expect_alert("now requires Multi-Factor Authentication")
        assert site.mfa_method() == "totp"

        person.sign_in(admin)
        person.set_up(admin)
        person.goto("/admin/mfa")
        expect(method).to_have_value("totp")
        person.change_mfa_settings(admin, method="Disabled")  # a step-up with a code now
        person.expect_path("/admin/mfa")
        expect(person.page.get_by_role("status")).to_have_text(
            "Multi-Factor Authentication is now set to Disabled."
        )
        expect(method).to_have_value("disabled")

        changes = [
            e.detail for e in site.audit_events("mfa_method_changed") if e.actor == admin.username
        ]
        assert changes == ["disabled -> totp", "totp -> disabled"]

        other = open_window(java_script_enabled=javascript)
        other.sign_in(user)  # Disabled again: no code asked
        other.expect_path("/")
        other.expect_signed_in(user)
        assert person.console_errors == other.console_errors == []
    finally:
        site.set_mfa_method("totp")


def test_admin_reset_by_api_then_cli_each_followed_by_set_up_again(
    site, open_window, javascript, totp_on
):
    account = site.new_account()
    person = open_window(java_script_enabled=javascript)
    person.sign_in(account)
    person.set_up(account)

    for reset_by in ("api", "cli"):
        old_secret = account.secret
        if reset_by == "api":
            response = site.api_reset(account)
            assert response.status_code == 204, response.text
        else:
            result = site.flask("mfa", "reset", account.username)
            assert result.returncode == 0, result.stderr
            assert f"Reset TOTP for '{account.username}'" in result.stdout

        person.page.reload()  # the reset ended the open session
        person.expect_path("/login")

        person.sign_in(account)
        person.expect_path("/mfa/setup")
        expect(person.page.get_by_role("status")).to_contain_text(
            "An administrator reset your two-factor authentication"
        )
        person.set_up(account)
        assert account.secret != old_secret, f"after the {reset_by} reset: the old key again"
    assert person.console_errors == []


def test_recovery_codes_download_then_sign_in_with_one_once(
    site, open_window, javascript, totp_on
):
    account = site.new_account()
    person = open_window(java_script_enabled=javascript)
    person.sign_in(account)
    codes = person.confirm_set_up(account)

    # "Download as text": a file with the ten codes, and the page stays put.
    with person.page.expect_download() as download_info:
        person.page.get_by_role("link", name="Download as text").click()
    download = download_info.value
    assert download.suggested_filename == "recovery-codes.txt"
    text = Path(download.path()).read_text()
    assert f"recovery codes for {account.username}" in text
    assert [line for line in text.splitlines() if RECOVERY_FORMAT.fullmatch(line)] == list(codes)
    person.expect_path("/mfa/recovery-codes")
    served = person.page.context.request.get("/mfa/recovery-codes.txt")
    assert served.headers["cache-control"] == "no-store", served.headers  # kept by no cache
    assert served.headers["content-type"].startswith("text/plain"), served.headers
    person.save_recovery_codes()
    person.expect_path("/")
    # Shown once: Back does not bring them back, nor does the file.
    person.page.go_back()
    person.expect_path("/account/security")
    expect(person.page.locator("#recovery-codes")).to_have_count(0)
    assert person.page.context.request.get("/mfa/recovery-codes.txt").url.endswith(
        "/account/security"
    )
    person.sign_out()

    # Any code, in any order; dashes and capitals do not matter.
    person.sign_in(account)
    person.use_recovery_code(codes[6].upper().replace("-", ""))
    person.expect_path("/")
    person.expect_signed_in(account)
    person.expect_status("Recovery code accepted. You have 9 recovery codes left.")
    person.sign_out()

    # The same code a second time: refused, and the field is there to try again.
    person.sign_in(account)
    person.use_recovery_code(codes[6])
    person.expect_path("/mfa/recovery")
    person.expect_alert(WRONG_RECOVERY_CODE)
    expect(person.page.get_by_label("Recovery code")).to_be_focused()
    site.spend_recovery_codes(account, codes[:2] + codes[3:6])  # as if used on other days
    person.page.get_by_label("Recovery code").fill(codes[2])
    person.page.get_by_role("button", name="Verify").click()
    person.expect_path("/")
    person.expect_status(  # three or fewer left: urged to make new ones
        "Recovery code accepted. You have 3 recovery codes left. "
        "Generate new codes on your Account security page soon."
    )
    person.open_account_security()
    expect(person.page.locator("#recovery-codes-left")).to_have_text(
        "3 of 10 recovery codes left."
    )
    person.expect_status("You are running out of recovery codes.")
    assert person.console_errors == []


def test_remembered_device_skips_the_code_until_forgotten(site, open_window, javascript, totp_on):
    admin = site.new_account(admin=True, enrolled=True)
    account = site.new_account(enrolled=True)
    person = open_window(java_script_enabled=javascript)
    try:
        person.sign_in_with_code(admin)
        person.goto("/admin/mfa")
        days = person.page.get_by_label("Remember devices for N days")
        expect(days).to_have_value("0")  # off until an administrator turns it on
        person.change_mfa_settings(admin, remember_days="7")
        person.expect_path("/admin/mfa")
        person.expect_status(
            "Multi-Factor Authentication is now set to TOTP. Devices are remembered for 7 days."
        )
        expect(days).to_have_value("7")
        assert site.remember_days() == 7
        person.sign_out()

        person.sign_in(account)
        person.expect_path("/mfa/verify")
        remember = person.page.get_by_label("Remember this device for 7 days")
        expect(remember).not_to_be_checked()
        expect(remember).to_have_accessible_description(
            re.compile(r"^Only use on a private device\.")
        )
        remember.check()
        person.enter_code(account.fresh_code())
        person.expect_path("/")
        person.expect_signed_in(account)
        cookie = next(c for c in person.page.context.cookies() if c["name"] == "smfa_device")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax", cookie
        assert cookie["expires"] > time.time() + 6.9 * 24 * 3600, cookie
        if javascript:  # the token lives in the HttpOnly cookie only
            stored = person.page.evaluate("JSON.stringify([localStorage, sessionStorage])")
            assert cookie["value"] not in stored
        person.sign_out()

        # The password only: straight home, no code asked.
        person.sign_in(account)
        person.expect_path("/")
        person.expect_signed_in(account)

        person.open_account_security()
        devices = person.page.locator("table", has_text="Remembered on")
        expect(devices.locator("tbody tr")).to_have_count(1)
        person.page.get_by_role("button", name="Forget all remembered devices").click()
        person.expect_path("/account/security")
        person.expect_status("Forgot 1 remembered device.")
        expect(person.page.locator("#devices + p")).to_have_text("No device is remembered.")
        person.sign_out()

        person.sign_in(account)  # the browser still sends its cookie: the server says no
        assert any(c["name"] == "smfa_device" for c in person.page.context.cookies())
        person.expect_path("/mfa/verify")
        assert person.console_errors == []
    finally:
        site.set_remember_days(0)


def test_account_security_signs_out_other_sessions_then_changes_the_password(
    site, open_window, javascript, totp_on
):
    account = site.new_account(enrolled=True)
    person = open_window(java_script_enabled=javascript)
    other = open_window(java_script_enabled=javascript)  # the same person's other browser
    person.sign_in_with_code(account)
    other.sign_in_with_code(account)

    person.open_account_security()
    sessions = person.page.locator("table", has_text="Last seen").locator("tbody tr")
    expect(sessions).to_have_count(2)
    expect(sessions.filter(has_text="(this session)")).to_have_count(1)
    person.page.get_by_role("button", name="Sign out other sessions").click()
    person.expect_path("/account/security")
    person.expect_status("Signed out 1 other session.")
    expect(sessions).to_have_count(1)
    other.page.reload()
    other.expect_path("/login")

    person.page.get_by_role("link", name="Change your password").click()
    person.expect_path("/account/password")
    person.page.get_by_label("Current password").fill(PASSWORD)
    person.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    person.page.get_by_label("New password again").fill(NEW_PASSWORD)
    person.page.get_by_role("button", name="Change password").click()
    person.expect_path("/account/security")
    person.expect_status("Your password was changed.")
    expect(person.page.locator("header")).to_contain_text(account.username)  # still in
    person.sign_out()

    person.sign_in(account)  # the old password
    person.expect_path("/login")
    person.expect_alert(WRONG_PASSWORD)
    person.sign_in(account, NEW_PASSWORD)
    person.expect_path("/mfa/verify")  # the new one, and still the code after it
    assert person.console_errors == other.console_errors == []


def test_account_security_new_recovery_codes_then_a_new_authenticator(
    site, open_window, javascript, totp_on
):
    account = site.new_account(enrolled=True)
    site.give_recovery_codes(account)
    first_codes = account.recovery_codes
    person = open_window(java_script_enabled=javascript)
    person.sign_in(account)  # with a recovery code: the two codes below never wait
    person.use_recovery_code(first_codes[0])
    person.expect_path("/")

    person.open_account_security()
    expect(person.page.locator("#recovery-codes-left")).to_have_text(
        "9 of 10 recovery codes left."
    )
    person.page.get_by_role("link", name="Generate new recovery codes").click()
    person.expect_path("/account/recovery-codes")
    person.confirm_identity(PASSWORD, code=account.fresh_code())
    new_codes = person.read_recovery_codes(account)
    person.expect_status("The old ones no longer work.")
    assert not set(new_codes) & set(first_codes)
    person.save_recovery_codes()
    person.expect_path("/account/security")
    expect(person.page.locator("#recovery-codes-left")).to_have_text(
        "10 of 10 recovery codes left."
    )

    person.page.get_by_role("link", name="Move to a new authenticator app").click()
    person.expect_path("/account/authenticator")
    if javascript:  # the current code
        person.confirm_identity(PASSWORD, code=account.fresh_code())
    else:  # or, the old phone gone, a recovery code
        person.confirm_identity(PASSWORD, recovery_code=new_codes[0])
    person.expect_path("/account/authenticator/new")
    old_secret = account.secret
    new_secret = person.read_secret(account)
    assert new_secret != old_secret
    expect(person.page.locator("#totp-qr").get_by_role("img")).to_have_accessible_name(
        re.compile("new authenticator app")
    )
    person.page.get_by_label(CODE_LABEL).fill(account.fresh_code())  # from the NEW key
    person.page.get_by_role("button", name="Confirm the new app").click()
    person.expect_path("/account/security")
    person.expect_status("Your new authenticator app is set up; the old one no longer works.")
    person.sign_out()

    person.sign_in(account)
    person.expect_path("/mfa/verify")
    person.enter_code(account.code_of(old_secret))  # the old app's current code
    person.expect_alert(WRONG_CODE)
    person.page.get_by_role("link", name="Use a recovery code instead").click()
    person.page.get_by_label("Recovery code").fill(first_codes[1])  # voided by the new set
    person.page.get_by_role("button", name="Verify").click()
    person.expect_alert(WRONG_RECOVERY_CODE)
    person.page.get_by_role("link", name="Use the code from your authenticator app").click()
    person.enter_code(account.fresh_code())
    person.expect_path("/")
    person.expect_signed_in(account)
    assert person.console_errors == []


def test_account_security_lists_only_live_sessions(site, open_window, totp_on):
    account = site.new_account(enrolled=True)
    person = open_window()
    person.sign_in_with_code(account)  # a browser left signed in...
    site.backdate_sessions(account, days=3)  # ...and unused since: that session is over
    person.page.context.clear_cookies()
    person.sign_in_with_code(account)
    person.open_account_security()
    sessions = person.page.locator("table", has_text="Last seen").locator("tbody tr")
    assert sessions.all_inner_texts() == [sessions.filter(has_text="(this session)").inner_text()]


def test_recovery_step_cancels_then_the_account_page_speaks_people_s_words(
    site, open_window, totp_on
):
    """ "Cancel and sign out" leaves the recovery-code step (a POST, with its token);
    the activity then reads "Signed in", "Code accepted", and this browser has a name."""
    account = site.new_account(enrolled=True)
    site.give_recovery_codes(account)
    person = open_window()
    person.sign_in(account)
    person.expect_path("/mfa/verify")
    person.page.get_by_role("link", name="Use a recovery code instead").click()
    person.expect_path("/mfa/recovery")
    person.page.get_by_role("button", name="Cancel and sign out").click()
    person.expect_path("/login")
    person.expect_status("You have signed out.")
    person.just_signed_out = True
    person.sign_in_with_code(account)
    person.open_account_security()
    activity = person.page.get_by_role("table", name="The last 20 sign-in events of this account")
    expect(activity.locator("tbody td:nth-child(2)")).to_have_text(
        ["Code accepted", "Signed in", "Signed out", "Signed in"]  # newest first
    )
    sessions = person.page.get_by_role("table", name="Your sessions")
    expect(sessions.locator("tbody td:nth-child(4)")).to_have_text(
        [re.compile(r"^(Headless )?Chrome \d+ on Linux$")]
    )
    expect(person.page.locator("main")).not_to_contain_text("Mozilla/5.0")
    assert person.console_errors == []


def test_expired_sign_in_says_so(site, open_window, totp_on):
    account = site.new_account(enrolled=True)
    person = open_window()
    person.sign_in(account)
    person.expect_path("/mfa/verify")
    site.backdate_pending_sign_in(account, 301)  # the code step lives 5 minutes
    person.enter_code(account.fresh_code())
    person.expect_path("/login")
    person.expect_alert("Your sign-in expired. Please sign in again.")


# ------------------------------------------------------------------- administration


STEPPED_UP = "Thank you. You can make administrative changes for the next 5 minutes."


def test_admin_steps_up_then_resets_one_user_and_unlocks_another(
    site, open_window, javascript, totp_on
):
    admin = site.new_account(admin=True, enrolled=True)
    lost_phone = site.new_account(enrolled=True)
    guesser = site.new_account(enrolled=True)
    user = open_window(java_script_enabled=javascript)
    user.sign_in_with_code(lost_phone)
    person = open_window(java_script_enabled=javascript)
    person.sign_in_with_code(admin)

    person.page.locator("header").get_by_role("link", name="Administration").click()
    person.page.get_by_role("link", name="Users", exact=True).click()
    person.expect_path("/admin/users")
    person.search_users(lost_phone.username)
    expect(person.user_row(lost_phone)).to_contain_text("Set up")
    person.act_on_user("Reset MFA", lost_phone)
    # Not yet: first the administrator proves again who they are.
    person.step_up(admin)
    person.expect_path(f"/admin/users/{lost_phone.username}/reset-mfa")
    person.expect_status(STEPPED_UP)
    expect(person.page.get_by_role("heading", level=1)).to_have_text(
        f"Reset two-factor authentication: {lost_phone.username}"
    )
    person.page.get_by_role("button", name="Reset two-factor authentication").click()
    person.expect_path("/admin/users")
    person.expect_status(
        f"Two-factor authentication of {lost_phone.username} was reset; their sessions ended."
    )
    expect(person.user_row(lost_phone)).to_contain_text("Not set up")

    user.page.reload()  # the reset ended their session
    user.expect_path("/login")
    user.sign_in(lost_phone)
    user.expect_path("/mfa/setup")
    user.expect_status("An administrator reset your two-factor authentication")

    # Another user guessed codes until each try has to wait (16 s after the 9th).
    site.throttle_codes(guesser, failures=DEFAULTS["MFA_BACKOFF_AFTER"] + 4)
    user.page.context.clear_cookies()
    user.sign_in(guesser)
    user.expect_path("/mfa/verify")
    user.enter_code(guesser.fresh_code())
    user.expect_alert("Too many wrong codes. Wait")
    person.search_users(guesser.username)
    expect(person.user_row(guesser)).to_contain_text("Throttled (9 wrong codes)")
    person.act_on_user("Unlock", guesser)
    # The step-up still counts: straight to the confirmation.
    person.expect_path(f"/admin/users/{guesser.username}/unlock")
    person.page.get_by_role("button", name="Unlock").click()
    person.expect_path("/admin/users")
    person.expect_status(f"{guesser.username} was unlocked and can enter a code again.")
    expect(person.user_row(guesser).locator("td").nth(6)).to_have_text("OK")  # the Codes column
    user.enter_code(guesser.fresh_code())  # at once, no wait
    user.expect_path("/")
    user.expect_signed_in(guesser)

    # The proof lasts ADMIN_STEP_UP_SECONDS (300), then the next action asks again.
    site.backdate_step_up(admin, 301)
    person.act_on_user("Sign out everywhere", guesser)
    person.expect_path("/admin/step-up")

    person.goto(f"/admin/audit?user={lost_phone.username}&event=totp_reset")
    expect(person.page.locator("main tbody tr")).to_have_count(1)
    expect(person.page.locator("main tbody tr td").nth(3)).to_have_text(admin.username)
    assert person.console_errors == user.console_errors == []


def test_admin_creates_a_user_makes_them_admin_then_revokes_and_reads_the_audit_log(
    site, open_window, javascript, totp_on
):
    admin = site.new_account(admin=True, enrolled=True)
    person = open_window(java_script_enabled=javascript)
    person.sign_in_with_code(admin)
    person.goto("/admin/users")
    person.page.get_by_role("link", name="Create a user").click()
    person.step_up(admin)
    person.expect_path("/admin/users/new")

    newcomer = Account(site.new_name())
    person.page.get_by_label("Username").fill(newcomer.username)
    person.page.get_by_role("button", name="Create user").click()  # no password: generated
    expect(person.page.get_by_role("heading", level=1)).to_have_text(
        f"User {newcomer.username} created"
    )
    person.expect_status(f"User {newcomer.username} was created.")
    password = person.page.locator("#initial-password").inner_text()
    assert len(password) >= 12, password
    site.secrets_seen.append(password)  # never in the server log (test_sc22)
    person.page.get_by_role("link", name="Back to Users").click()
    person.expect_path("/admin/users")
    expect(person.page.locator("main")).not_to_contain_text(password)  # shown once

    other = open_window(java_script_enabled=javascript)
    other.sign_in(newcomer, password)
    other.set_up(newcomer)  # TOTP is on: their first sign-in sets up the app

    expect(person.user_row(newcomer)).to_have_count(1)
    person.act_on_user("Make administrator", newcomer)  # the step-up still counts
    person.expect_path(f"/admin/users/{newcomer.username}/grant-admin")
    person.page.get_by_role("button", name="Make administrator").click()
    person.expect_status(f"{newcomer.username} is now an administrator.")
    expect(person.user_row(newcomer).locator("td").first).to_have_text("Yes")
    other.goto("/admin/")
    expect(other.page.get_by_role("heading", name="Administration", level=1)).to_be_visible()

    person.act_on_user("Revoke administrator", newcomer)
    person.expect_path(f"/admin/users/{newcomer.username}/revoke-admin")
    person.page.get_by_role("button", name="Revoke administrator").click()
    person.expect_status(f"{newcomer.username} is no longer an administrator.")
    expect(person.user_row(newcomer).locator("td").first).to_have_text("No")
    assert not site.is_admin(newcomer)
    other.page.reload()
    other.expect_alert("permission")

    with site.sole_admin(admin):  # the last administrator cannot revoke themselves
        person.search_users(admin.username)
        person.act_on_user("Revoke administrator", admin)
        person.page.get_by_role("button", name="Revoke administrator").click()
        person.expect_path("/admin/users")
        person.expect_alert(f"{admin.username} is the last administrator and cannot be revoked.")
        expect(person.user_row(admin).locator("td").first).to_have_text("Yes")
        assert site.is_admin(admin)

    person.page.get_by_role("navigation", name="Administration pages").get_by_role(
        "link", name="Audit log"
    ).click()
    person.expect_path("/admin/audit")
    # Each row says what happened in words, the recorded event and outcome beside them.
    events = person.page.locator("main tbody tr td:nth-child(2) .event-code")
    person.filter_audit(user=newcomer.username)
    expect(events.first).to_have_text("admin_revoked · ok")  # newest first
    expect(events.last).to_have_text("user_created · ok")
    assert {"user_created · ok", "login · ok", "totp_enrolled · ok", "admin_granted · ok"} <= set(
        events.all_inner_texts()
    )
    person.filter_audit(event="admin_revoked")  # and still that user
    expect(events).to_have_text(["admin_revoked · ok"])
    row = person.page.locator("main tbody tr")
    expect(row.locator("td").nth(1)).to_contain_text("Administrator rights revoked")
    expect(row.locator("td").nth(3)).to_have_text(admin.username)
    # The administrator's: what they did, and (newest) the refused revocation of the last one.
    person.filter_audit(user=admin.username)
    expect(events).to_have_text(["admin_revoked · refused", "admin_revoked · ok"])
    expect(row.first.locator("td").nth(1)).to_contain_text("last administrator kept")
    expect(row.first.locator("td").nth(2)).to_have_text(admin.username)
    expect(row.first.locator("td").nth(5)).to_have_text("last administrator")
    expect(row.last.locator("td").nth(2)).to_have_text(newcomer.username)
    expect(person.page.get_by_label("Event type")).to_have_value("admin_revoked")
    assert person.console_errors == []
    assert [e for e in other.console_errors if "status of 403" not in e] == []  # the 403 page


def test_users_and_audit_log_page_through_keeping_the_filter(site, open_window, totp_on):
    site.add_users("paged", PER_PAGE + 1)
    admin = site.new_account(admin=True, enrolled=True)
    person = open_window()
    person.sign_in_with_code(admin)
    rows = person.page.locator("main tbody tr")
    pages = person.page.get_by_role("navigation", name="Pages", exact=True)
    for path, caption in (
        ("/admin/users?q=paged", f"{PER_PAGE + 1} users matching “paged”"),
        ("/admin/audit?user=browser-tests&event=user_created", f"{PER_PAGE + 1} events"),
    ):
        person.goto(path)
        expect(person.page.locator("main table caption")).to_contain_text(caption)
        expect(rows).to_have_count(PER_PAGE)
        expect(pages).to_contain_text("Page 1 of 2")
        expect(pages.get_by_role("link", name="Previous page")).to_have_count(0)
        pages.get_by_role("link", name="Next page").click()
        expect(pages).to_contain_text("Page 2 of 2")
        expect(rows).to_have_count(1)
        expect(person.page.locator("main table caption")).to_contain_text(caption)
        pages.get_by_role("link", name="Previous page").click()
        expect(rows).to_have_count(PER_PAGE)
    # Newest first: the last one created heads page 1.
    expect(rows.first.locator("td").nth(2)).to_have_text("paged.051")


# ------------------------------------------------------------ the QR code, by camera


def zbar_decode(png: Path) -> list[str]:
    """Every QR code zbarimg finds in the image, one text each."""
    result = subprocess.run(
        [tool("zbarimg"), "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(png)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode in (0, 4), f"zbarimg failed: {result.stderr!r}"  # 4: none found
    return result.stdout.decode("utf-8").splitlines()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("window", ["desktop", "mobile-360"])
def test_qr_screenshot_decodes_to_the_otpauth_uri(
    site, open_window, tmp_path, window, scheme, totp_on
):
    account = site.new_account()
    person = open_window(color_scheme=scheme, **(MOBILE if window != "desktop" else {}))
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    secret = person.read_secret(account)
    qr = person.page.locator("#totp-qr svg")
    expect(qr).to_be_visible()

    png = tmp_path / "qr.png"
    if window == "desktop":
        qr.screenshot(path=str(png))  # the element alone
    else:
        # What a phone shows: the QR code fits beside nothing and nothing scrolls sideways.
        box = qr.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360, box
        scroll_width = person.page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= 360, f"the page scrolls sideways: {scroll_width}px"
        person.page.screenshot(path=str(png), full_page=True)  # the whole page
        person.screenshot(f"setup-mobile-{scheme}")

    issuer = ISSUER.replace(" ", "%20")
    assert zbar_decode(png) == [
        f"otpauth://totp/{issuer}:{account.username}?secret={secret}&issuer={issuer}"
    ]


# ---------------------------------------------------------------------- keyboard only


def test_keyboard_only_sign_in_with_a_wrong_then_right_code(site, open_window, totp_on):
    account = site.new_account(enrolled=True)
    person = open_window()
    keyboard = person.page.keyboard
    person.goto("/login")

    expect(person.page.get_by_label("Username")).to_be_focused()
    keyboard.type(account.username)
    keyboard.press("Tab")
    expect(person.page.get_by_label("Password")).to_be_focused()
    keyboard.type(PASSWORD)
    keyboard.press("Enter")

    person.expect_path("/mfa/verify")
    code_field = person.page.get_by_label(CODE_LABEL)
    expect(code_field).to_be_focused()
    keyboard.type(account.wrong_code())
    keyboard.press("Enter")
    person.expect_alert(WRONG_CODE)
    expect(code_field).to_be_focused()
    keyboard.type(account.fresh_code())
    keyboard.press("Enter")
    person.expect_path("/")
    person.expect_signed_in(account)

    # Sign out from the keyboard too: Tab reaches the button, Enter presses it.
    sign_out = person.page.locator("header").get_by_role("button", name="Sign out")
    for _ in range(10):
        keyboard.press("Tab")
        if sign_out.evaluate("button => document.activeElement === button"):
            break
    expect(sign_out).to_be_focused()
    keyboard.press("Enter")
    person.expect_path("/login")


def test_setup_page_focuses_the_code_and_describes_the_qr_code(site, open_window, totp_on):
    account = site.new_account()
    person = open_window()
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    expect(person.page.get_by_label(CODE_LABEL)).to_be_focused()
    # The QR code is one image with a name that says what it is and what else to do.
    qr_image = person.page.locator("#totp-qr").get_by_role("img")
    expect(qr_image).to_have_count(1)
    expect(qr_image).to_have_accessible_name(re.compile(r"QR code .*secret key", re.S))


# ------------------------------------------------------- every page: axe, labels, PNGs


def _signed_in(person: Person, *, admin: bool = False, at: str = "/") -> Account:
    """Signed in with a code, at `at`. The catalogue signs in once per kind of user and
    then puts that session's cookies back for each page (a sign-in per page cost more
    than the page); if the session is gone, it signs in afresh."""
    saved = person.saved_sessions.get(admin)
    if saved:
        account, cookies = saved
        person.page.context.add_cookies(cookies)
        person.goto(at)
        if not person.page.url.startswith(person.site.url + "/login"):
            return account
        person.page.context.clear_cookies()
    account = person.site.new_account(admin=admin, enrolled=True)
    person.sign_in_with_code(account)
    person.saved_sessions[admin] = (account, person.page.context.cookies())
    if at != "/":
        person.goto(at)
    return account


def _at_setup(person: Person) -> Account:
    account = person.site.new_account()
    person.sign_in(account)
    person.expect_path("/mfa/setup")
    return account


def _at_verify(person: Person) -> Account:
    account = person.site.new_account(enrolled=True)
    person.sign_in(account)
    person.expect_path("/mfa/verify")
    return account


def _setup_after_reset(person: Person) -> None:
    account = person.site.new_account(enrolled=True)
    person.site.reset_in_process(account)
    person.sign_in(account)


def _expired(person: Person) -> None:
    account = _at_verify(person)
    person.site.backdate_pending_sign_in(account, 301)
    person.page.reload()


def _setup_error(person: Person) -> None:
    account = _at_setup(person)
    person.read_secret(account)
    person.enter_code(account.wrong_code())


def _verify_error(person: Person) -> None:
    _at_verify(person)
    person.enter_code("12345")  # malformed: the same message as a wrong code


def _signed_in_at(path: str, *, admin: bool = False) -> Callable[[Person], None]:
    def reach(person: Person) -> None:
        _signed_in(person, admin=admin, at=path)

    return reach


def _signed_out(person: Person) -> None:
    person.sign_in_with_code(person.site.new_account(enrolled=True))  # its own session
    person.sign_out()


def _admin_mfa_saved(person: Person) -> None:
    account = _signed_in(person, admin=True, at="/admin/mfa")
    person.change_mfa_settings(account)


def _at_recovery_codes(person: Person) -> None:
    account = _at_setup(person)
    person.read_secret(account)
    person.enter_code(account.fresh_code())
    person.read_recovery_codes(account)
    # Each code on one line: a code broken across two is easily copied wrong.
    lines = person.page.locator("#recovery-codes code").evaluate_all(
        "codes => codes.map(c => c.getClientRects().length)"
    )
    assert lines == [1] * 10, f"recovery codes broken across lines: {lines}"


def _at_recovery(person: Person) -> None:
    _at_verify(person)
    person.page.get_by_role("link", name="Use a recovery code instead").click()


def _recovery_error(person: Person) -> None:
    _at_recovery(person)
    person.page.get_by_label("Recovery code").fill("abcd-efgh-ijkl-mnop")
    person.page.get_by_role("button", name="Verify").click()


def _at_verify_with_remember(person: Person) -> None:
    person.site.set_remember_days(7)
    _at_verify(person)
    expect(person.page.get_by_label("Remember this device for 7 days")).to_be_visible()


def _account_security_in_use(person: Person) -> None:
    """Every table filled: a remembered device, two sessions, sign-in events."""
    person.site.set_remember_days(7)
    account = person.site.new_account(enrolled=True)
    person.site.give_recovery_codes(account)
    person.sign_in(account)
    person.page.get_by_label("Remember this device for 7 days").check()
    person.enter_code(account.fresh_code())
    person.expect_path("/")
    person.page.context.clear_cookies(name="smfa_session")  # another browser, same device
    person.sign_in(account)
    person.expect_path("/")  # remembered: no code
    person.goto("/account/security")
    expect(person.page.locator("main tbody tr")).not_to_have_count(0)
    expect(person.page.get_by_role("button", name="Forget all remembered devices")).to_be_visible()
    expect(person.page.get_by_role("button", name="Sign out other sessions")).to_be_visible()


def _account_security_codes_low(person: Person) -> None:
    """Three recovery codes left: the warning, in both colour schemes."""
    account = person.site.new_account(enrolled=True)
    person.site.give_recovery_codes(account)
    person.site.spend_recovery_codes(account, account.recovery_codes[:7])
    person.sign_in_with_code(account)
    person.goto("/account/security")


def _password_error(person: Person) -> None:
    _signed_in_at("/account/password")(person)
    person.page.get_by_label("Current password").fill("not the password")
    person.page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    person.page.get_by_label("New password again").fill(NEW_PASSWORD)
    person.page.get_by_role("button", name="Change password").click()


def _confirm_error(person: Person) -> None:
    account = _signed_in(person, at="/account/recovery-codes")
    person.confirm_identity(PASSWORD, code=account.wrong_code())


def _at_new_authenticator(person: Person) -> None:
    account = _signed_in(person, at="/account/authenticator")
    person.confirm_identity(PASSWORD, code=account.fresh_code())


def _make_app_password(person: Person, name: str, password: str = PASSWORD) -> None:
    """On /account/app-passwords, signed in with a code: fill in the form and send it."""
    account = _signed_in(person, at="/account/app-passwords")
    person.page.get_by_label("Name (which app or device will use it)").fill(name)
    person.page.get_by_label("Your password").fill(password)
    person.page.get_by_label(CODE_LABEL).fill(account.fresh_code())
    person.page.get_by_role("button", name="Make the app password").click()


def _app_password_made(person: Person) -> None:
    """The secret, shown once, with its copy button (the script shows it)."""
    _make_app_password(person, f"Phone calendar {secrets.token_hex(3)}")
    expect(person.page.locator("#app-password")).to_have_text(re.compile(r"^[a-z2-7-]{39}$"))
    expect(person.page.get_by_role("button", name="Copy")).to_be_visible()


def _app_passwords_listed(person: Person) -> None:
    """The list, with at least one app password in it (and its Revoke button)."""
    _app_password_made(person)
    person.page.get_by_role("link", name="Done").click()
    expect(person.page.locator("#app-passwords tbody tr")).not_to_have_count(0)


def _admin_mfa_error(person: Person) -> None:
    account = _signed_in(person, admin=True, at="/admin/mfa")
    person.change_mfa_settings(account, remember_days="99")


def _stepped_up(person: Person, at: str) -> Account:
    """An administrator at `at`, past the step-up page if their proof is not fresh."""
    account = _signed_in(person, admin=True, at=at)
    if person.page.url.startswith(person.site.url + "/admin/step-up"):
        person.step_up(account)
    return account


def _admin_users(person: Person) -> None:
    """Users, with a throttled user at the top (named to sort first in the screenshot)."""
    if not person.site.has_user("aaron"):
        person.site.throttle_codes(person.site.new_account(enrolled=True, name="aaron"), 9)
    _signed_in(person, admin=True, at="/admin/users")
    expect(person.page.locator("main tbody")).to_contain_text("Throttled (9 wrong codes)")


def _step_up_error(person: Person) -> None:
    admin = _signed_in(person, admin=True, at="/admin/step-up")
    person.page.get_by_label(CODE_LABEL).fill(admin.wrong_code())
    person.page.get_by_role("button", name="Confirm").click()


def _user_action(person: Person) -> None:
    """The confirmation page (one template for every action) of a throttled user."""
    if not person.site.has_user("zoe"):
        person.site.throttle_codes(person.site.new_account(enrolled=True, name="zoe"), 9)
    _stepped_up(person, "/admin/users/zoe/reset-mfa")


def _new_user_error(person: Person) -> None:
    _stepped_up(person, "/admin/users/new")
    person.page.get_by_role("button", name="Create user").click()  # no username


def _new_user_created(person: Person) -> None:
    _stepped_up(person, "/admin/users/new")
    person.page.get_by_label("Username").fill(person.site.new_name())
    person.page.get_by_role("button", name="Create user").click()
    expect(person.page.locator("#initial-password")).to_be_visible()
    person.site.secrets_seen.append(person.page.locator("#initial-password").inner_text())


def _user_groups(person: Person, group: str = "staff") -> None:
    """An administrator adds a user to a group on its page (stepping up when asked)."""
    if not person.site.has_user("yann"):
        person.site.new_account(name="yann")
    admin = _signed_in(person, admin=True, at="/admin/users/yann/groups")
    for _ in range(2):  # the second time, after the step-up it asked for
        person.page.get_by_label("Group name").fill(group)
        person.page.get_by_role("button", name="Add to group").click()
        if not person.page.url.startswith(person.site.url + "/admin/step-up"):
            return
        person.step_up(admin)


def _audit_filtered(person: Person) -> None:
    admin = _signed_in(person, admin=True, at="/admin/audit")
    person.filter_audit(user=admin.username, event="login")
    expect(person.page.locator("main tbody tr")).not_to_have_count(0)


def _audit_error(person: Person) -> None:
    _signed_in(person, admin=True, at="/admin/audit")
    person.page.get_by_label("From (UTC)").fill("2026-01-02")
    person.page.get_by_label("To (UTC)").fill("2026-01-01")
    person.page.get_by_role("button", name="Filter").click()


@dataclass(frozen=True)
class Visit:
    """How to reach one page in one state, what it must show, and whether the docs show it."""

    path: str
    reach: Callable[[Person], object]
    alert: str | None = None  # the error the page must announce
    status: str | None = None  # the (polite) message it must show
    screenshot: bool = False
    full_page: bool = True  # False: the screenshot shows what fits in the window


# Every page of the product in each state worth checking; a new page is one line here.
PAGES = {
    "login": Visit("/login", lambda p: p.goto("/login"), screenshot=True),
    "login-error": Visit(
        "/login", lambda p: p.sign_in(p.site.new_account(), "wrong"), alert=WRONG_PASSWORD
    ),
    "signed-out": Visit("/login", _signed_out, status="You have signed out."),
    "expired": Visit("/login", _expired, alert="Your sign-in expired."),
    "setup": Visit("/mfa/setup", _at_setup, screenshot=True),
    "setup-error": Visit("/mfa/setup", _setup_error, alert=WRONG_CODE),
    "setup-after-reset": Visit("/mfa/setup", _setup_after_reset, status="An administrator reset"),
    "verify": Visit("/mfa/verify", _at_verify),
    "verify-error": Visit("/mfa/verify", _verify_error, alert=WRONG_CODE, screenshot=True),
    "home": Visit("/", _signed_in, screenshot=True),
    "admin": Visit("/admin/", _signed_in_at("/admin/", admin=True)),
    "admin-mfa": Visit("/admin/mfa", _signed_in_at("/admin/mfa", admin=True), screenshot=True),
    "admin-mfa-saved": Visit("/admin/mfa", _admin_mfa_saved, status="is now set to TOTP"),
    "admin-mfa-error": Visit("/admin/mfa", _admin_mfa_error, alert="0 to 31 days"),
    "recovery-codes": Visit(
        "/mfa/recovery-codes", _at_recovery_codes, status=SET_UP, screenshot=True
    ),
    "recovery": Visit("/mfa/recovery", _at_recovery),
    "recovery-error": Visit("/mfa/recovery", _recovery_error, alert=WRONG_RECOVERY_CODE),
    "verify-remember": Visit("/mfa/verify", _at_verify_with_remember),
    "account-security": Visit("/account/security", _account_security_in_use, screenshot=True),
    "account-security-no-codes": Visit(  # set up before recovery codes existed
        "/account/security", _signed_in_at("/account/security"), status="no recovery codes yet"
    ),
    "account-security-codes-low": Visit(
        "/account/security", _account_security_codes_low, status="running out"
    ),
    "password": Visit("/account/password", _signed_in_at("/account/password")),
    "password-error": Visit("/account/password", _password_error, alert="password is not right"),
    "confirm-codes": Visit("/account/recovery-codes", _signed_in_at("/account/recovery-codes")),
    "confirm-authenticator": Visit(
        "/account/authenticator", _signed_in_at("/account/authenticator")
    ),
    "confirm-error": Visit("/account/recovery-codes", _confirm_error, alert=WRONG_CODE),
    "new-authenticator": Visit("/account/authenticator/new", _at_new_authenticator),
    "app-passwords": Visit("/account/app-passwords", _app_passwords_listed),
    "app-password-made": Visit("/account/app-passwords", _app_password_made),
    "app-passwords-error": Visit(
        "/account/app-passwords",
        lambda p: _make_app_password(p, "Laptop sync", "not the password"),
        alert="password is not right",
    ),
    "admin-users": Visit("/admin/users", _admin_users, screenshot=True, full_page=False),
    "admin-users-no-match": Visit(
        "/admin/users", _signed_in_at("/admin/users?q=nobody.here", admin=True)
    ),
    "step-up": Visit("/admin/step-up", _signed_in_at("/admin/step-up", admin=True)),
    "step-up-error": Visit("/admin/step-up", _step_up_error, alert=WRONG_CODE),
    "user-action": Visit("/admin/users/zoe/reset-mfa", _user_action),
    "user-new": Visit("/admin/users/new", lambda p: _stepped_up(p, "/admin/users/new")),
    "user-new-error": Visit("/admin/users/new", _new_user_error, alert="required"),
    "user-created": Visit("/admin/users/new", _new_user_created, status="was created"),
    "user-groups": Visit("/admin/users/yann/groups", _user_groups, status="is now in the group"),
    "user-groups-error": Visit(
        "/admin/users/yann/groups",
        lambda p: _user_groups(p, "staff,admins"),
        alert="A group name is 1-64 characters",
    ),
    "audit": Visit(
        "/admin/audit", _signed_in_at("/admin/audit", admin=True), screenshot=True, full_page=False
    ),
    "audit-filtered": Visit("/admin/audit", _audit_filtered),
    "audit-error": Visit("/admin/audit", _audit_error, alert="end date is before the start"),
    "error-403": Visit("/admin/", _signed_in_at("/admin/"), alert="permission"),
    "error-404": Visit("/no-such-page", lambda p: p.goto("/no-such-page"), alert="no page"),
}

# Every form control a person can reach, without a name from a <label> or ARIA.
UNLABELLED_FIELDS_JS = """() => [...document.querySelectorAll(
    "input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea")]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
               && !e.getAttribute("aria-labelledby"))
  .map(e => e.outerHTML)"""

AXE_RUN_JS = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => ({id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.map(n => n.target.join(" ")).slice(0, 5),
                summary: v.nodes.length ? v.nodes[0].failureSummary : ""}));
}"""


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: `make test` runs npm ci in tests/browser")
    return AXE_JS.read_text()


@pytest.fixture(scope="module")
def catalogue_window(site, chromium):
    """One window for every page of the catalogue (a new page costs more than the
    check); its cookies are cleared before each page, so each visit starts signed out
    (pages for a signed-in user put back one saved session: see _signed_in).
    axe is injected as an inline script, which the site's CSP rightly forbids: this
    context bypasses the CSP (the flows above run with it)."""
    context = chromium.new_context(base_url=site.url, bypass_csp=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    yield Person(site, context.new_page())
    context.close()


@pytest.mark.parametrize("name", PAGES)
def test_page_is_accessible_in_light_and_dark(site, catalogue_window, axe_source, name, totp_on):
    visit = PAGES[name]
    person = catalogue_window
    person.page.context.clear_cookies()
    person.just_signed_out = False  # what the window shows belongs to the last visit
    person.page.emulate_media(color_scheme="light")
    try:
        visit.reach(person)
    finally:
        if site.remember_days():  # turned on to show a page: off again for the others
            site.set_remember_days(0)
    person.expect_path(visit.path)
    page = person.page
    page.wait_for_load_state()
    if visit.alert:
        person.expect_alert(visit.alert)
    if visit.status:
        person.expect_status(visit.status)
    assert page.evaluate(UNLABELLED_FIELDS_JS) == [], "form fields without a label"

    page.add_script_tag(content=axe_source)
    found, background = {}, {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        background[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        found[scheme] = page.evaluate(AXE_RUN_JS)
        if visit.screenshot:
            person.screenshot(f"{name}-{scheme}", full_page=visit.full_page)
    assert background["light"] != background["dark"], "the dark scheme did not apply"
    assert found == {"light": [], "dark": []}, json.dumps(found, indent=1)


# ----------------------------------------------------------------------- what leaks


def test_sc22_server_log_never_holds_a_secret_or_password(site, open_window, totp_on):
    """Whatever this module did (this test's own set-up included), gunicorn's output,
    audit lines included, holds no TOTP secret and no password."""
    account = site.new_account()
    person = open_window()
    person.sign_in(account)
    person.set_up(account)
    open_window().sign_in(site.new_account(), "not the password")

    log = site.log()
    assert '"event": "totp_enrolled"' in log, "no audit line reached the log: nothing checked"
    leaked = [s for s in site.secrets_seen if s in log]
    assert not leaked, f"{len(leaked)} TOTP secrets in the server log"
    assert PASSWORD not in log and "not the password" not in log


# --------------------------------------------------- every page in every language


LANGUAGES = ("fr", "de", "es")
TRANSLATIONS = Path(__file__).resolve().parent.parent / "standalone_mfa" / "translations"
PLACEHOLDER = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)[sd]|<[^>]+>")
PHONE_WIDTH = 360


def english_left_behind(locale: str) -> list[str]:
    """The English sentences a page in `locale` must not show: every catalogue entry
    the language translates differently, as its longest run of words between
    placeholders and tags (at least three words: a name like "TOTP" may stay)."""
    from babel.messages.pofile import read_po

    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalogue = read_po(handle, locale=locale)
    sentences = set()
    for message in catalogue:
        english = message.id if isinstance(message.id, str) else message.id[1]
        translated = message.string if isinstance(message.string, str) else message.string[-1]
        if not english or not translated or translated == english:
            continue
        longest = max(PLACEHOLDER.split(english), key=len).strip(" .,:;()")
        if longest.count(" ") >= 2 and longest not in translated:
            sentences.add(longest)
    return sorted(sentences, key=len, reverse=True)


@pytest.fixture(scope="module")
def english_sentences() -> dict[str, list[str]]:
    return {locale: english_left_behind(locale) for locale in LANGUAGES}


@pytest.mark.parametrize("name", PAGES)
def test_page_in_each_language_has_no_english_left_and_fits_a_phone(
    site, catalogue_window, axe_source, english_sentences, name, totp_on
):
    """Each page of the catalogue, reached as above, then shown again in French,
    German and Spanish (the `lang` cookie, as the picker sets it): `<html lang>` says
    which, no English sentence of the catalogue is left, axe finds nothing serious,
    and at 360 px nothing is wider than the screen (the longest German words)."""
    visit = PAGES[name]
    person = catalogue_window
    person.page.context.clear_cookies()
    person.just_signed_out = False
    person.page.emulate_media(color_scheme="light")
    person.page.set_viewport_size({"width": 1280, "height": 720})
    try:
        visit.reach(person)
    finally:
        if site.remember_days():
            site.set_remember_days(0)
    person.expect_path(visit.path)
    page = person.page
    url = page.url
    page.set_viewport_size({"width": PHONE_WIDTH, "height": 800})
    try:
        for locale in LANGUAGES:
            page.context.add_cookies([{"name": "lang", "value": locale, "url": site.url}])
            page.goto(url)
            page.wait_for_load_state()
            if not page.url.startswith(url.split("?")[0]):
                continue  # a page shown once (it moved on): its first visit was checked
            assert page.evaluate("document.documentElement.lang") == locale, name
            shown = page.evaluate("document.body.innerText")
            left = [s for s in english_sentences[locale] if s in shown]
            assert left == [], f"{name} in {locale}: English left: {left[:5]}"
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= PHONE_WIDTH, f"{name} in {locale} is {wide}px wide at 360px"
            if visit.screenshot and locale == "fr":  # the docs show French on a phone
                person.screenshot(f"{name}-fr-phone")
            page.add_script_tag(content=axe_source)
            found = page.evaluate(AXE_RUN_JS)
            assert found == [], json.dumps(found, indent=1)
    finally:
        page.set_viewport_size({"width": 1280, "height": 720})
        page.context.clear_cookies()
