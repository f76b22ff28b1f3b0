"""The browser tests' library: Debian's Chromium (Playwright), the portal served by
gunicorn from a temporary instance folder (`Site`), a person at a window (`Person`), an
account and its authenticator app (`Account`), axe-core's checks, and the gateway site
(the portal and two apps behind the shipped nginx configs). The fixtures that use them
are in tests/e2e/conftest.py."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pyotp
import requests
from playwright.sync_api import Page, expect

from standalone_mfa import create_app
from standalone_mfa.accounts import reset
from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent, MfaThrottle, User, WebSession
from standalone_mfa.directory import settings, tokens
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import recovery, totp
from standalone_mfa.instance import write_config
from standalone_mfa.ops import schema
from support.app import FAST_HASH, PASSWORD
from support.oath import oathtool_codes
from support.paths import TESTS
from support.proxies import (
    DOMAIN,
    PORTAL_HOST,
    RULES,
    TRUST_ONE_PROXY,
    echo_upstream,
    free_port,
    nginx_gateway,
)
from support.servers import port_of, portal_instances

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here
# axe-core from npm (tests/browser/package-lock.json; `make test` runs npm ci there).
AXE_JS = TESTS / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR")
STARTUP_TIMEOUT = 30  # seconds for gunicorn to answer its first request
ACTION_TIMEOUT_MS = 10_000  # a stuck page fails the test instead of hanging it

CODE_LABEL = "6-digit code from your authenticator app"
SECRET_FORMAT = re.compile(r"(?:[A-Z2-7]{4} ){7}[A-Z2-7]{4}")
RECOVERY_FORMAT = re.compile(r"[a-z2-7]{4}(?:-[a-z2-7]{4}){3}")  # 80 bits, as shown
SET_UP = "Your authenticator app is set up."


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
        self.page.get_by_role("button", name="Sign in", exact=True).click()

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


def check_accessible(person: Person, axe_source: str) -> None:
    """Every field labelled; no serious or critical axe finding, light or dark (the
    window's context must bypass the CSP: see the `axe_window` fixture)."""
    page = person.page
    page.wait_for_load_state()
    assert page.evaluate(UNLABELLED_FIELDS_JS) == [], "form fields without a label"
    page.add_script_tag(content=axe_source)
    found = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found[scheme] = page.evaluate(AXE_RUN_JS)
    page.emulate_media(color_scheme="light")
    assert found == {"light": [], "dark": []}, json.dumps(found, indent=1)


# ---------------------------------------------------------------- the gateway site


def gateway_site(tmp_path_factory):
    """For a module's `site` fixture (`yield from gateway_site(tmp_path_factory)`): the
    portal under gunicorn behind the shipped nginx configs, in front of two echoing apps;
    yields (an in-process app on the portal's database, nginx's HTTPS port)."""
    folder = tmp_path_factory.mktemp("browser-gateway")
    port = free_port()
    settings = {
        "ACCESS_CONTROL": RULES,
        "GATEWAY_PORTAL_URL": f"https://{PORTAL_HOST}:{port}",
        "SESSION_COOKIE_DOMAIN": DOMAIN,
        **TRUST_ONE_PROXY,
    }  # no DATABASE_URL: a SQLite file in the instance folder, whatever the test pass
    with (
        portal_instances(folder, settings) as (app, [portal]),
        echo_upstream() as up,
        nginx_gateway(folder, port, port_of(portal), port_of(portal), up),
    ):
        yield app, port


def gateway_url(site, name: str, path: str = "/") -> str:
    return f"https://{name}.{DOMAIN}:{site[1]}{path}"


def code_now(secret: str) -> str:
    """What the authenticator app shows now (each user's key is used once)."""
    return pyotp.TOTP(secret).at(time.time())


def echoed(page) -> dict[str, str]:
    """The headers the app received, from the JSON it answered (lower-case names)."""
    body = json.loads(page.locator("body").inner_text())
    return {name.lower(): value for name, value in body["headers"]}


def gateway_window(chromium, javascript: bool, bypass_csp: bool = False):
    context = chromium.new_context(
        ignore_https_errors=True, java_script_enabled=javascript, bypass_csp=bypass_csp
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context, context.new_page()


def sign_in(page, username: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
