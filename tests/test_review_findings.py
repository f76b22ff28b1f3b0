"""Security review findings: races on one cookie, HEAD/OPTIONS, odd inputs, database
errors half-way through a multi-step operation, state-machine corners, throttle edge
cases and the command line.

Tests that pass are regression tests for behaviour the review checked and found right.
Tests marked `xfail(strict=True, reason="BUG: ...")` are written as the product should
behave; each one fails today and names the bug it exposes. Names carry the ID of the
item of /work/shared/SECURITY-CHECKLIST.md they belong to, where one applies.
"""

from __future__ import annotations

import html
import re
import threading
from urllib.parse import urljoin, urlsplit

import peewee
import pyotp
import pytest
import requests
from conftest import PASSWORD, events, make_app, test_config, together
from cryptography.fernet import Fernet
from werkzeug.serving import WSGIRequestHandler, make_server

from standalone_mfa import create_app
from standalone_mfa.accounts import reset, settings, tokens
from standalone_mfa.accounts.users import create_user, find_user
from standalone_mfa.core import audit, crypto
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.crypto import hash_token
from standalone_mfa.core.db import db
from standalone_mfa.core.db import open_database as open_db
from standalone_mfa.core.models import (
    MfaThrottle,
    TotpCredential,
    User,
    WebSession,
)
from standalone_mfa.factors import throttle, totp
from standalone_mfa.signin import sessions, state
from standalone_mfa.web import guard

HTTP_TIMEOUT = 30
MESSAGE_RE = re.compile(r'class="message message-[a-z]+"[^>]*>([^<]*)<')
CSRF_INPUT_RE = re.compile(r'<input\b[^>]*\bname="csrf_token"[^>]*>')
VALUE_RE = re.compile(r'\bvalue="([^"]*)"')
WAIT_RE = re.compile(r"Wait (\d+) seconds")
WRONG_PASSWORD_MESSAGE = "The username or password is not right."
WRONG_CODE_START = "That code is not right"


# --------------------------------------------------------------------------- helpers


def messages(response) -> list[str]:
    return [m.strip() for m in MESSAGE_RE.findall(response.get_data(as_text=True))]


def location(response) -> str | None:
    return response.headers.get("Location")


def cookie_name(app) -> str:
    return app.config["SESSION_COOKIE_NAME"]


def signed_in_as(client, username) -> bool:
    response = client.get("/")
    page = response.get_data(as_text=True)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in page


def failures(app, username) -> int:
    with app.app_context():
        return throttle.failures(find_user(username))


def credential_of(app, username):
    with app.app_context():
        return totp.credential_of(find_user(username))


def bound_sessions(app) -> list[tuple[str, str]]:
    """(username, state) of every session bound to a user."""
    with app.app_context():
        query = WebSession.select(WebSession, User).join(User)
        return sorted((s.user.username, s.state) for s in query)


def admin_token(app) -> str:
    with app.app_context():
        return tokens.create_token(find_user("root"), actor="test")


def give_credential(app, clock, username) -> str:
    """A confirmed credential, last used one step before now; returns the secret."""
    with app.app_context():
        user = find_user(username) or create_user(username, PASSWORD)
        secret = totp.new_secret()
        step = int(clock.timestamp()) // totp.PERIOD
        assert totp.enrol(user, secret, step - 1) is not None
    return secret


def pending_verify(new_browser, app, clock, username="alice"):
    """`username` has a credential and a browser waiting at /mfa/verify."""
    secret = give_credential(app, clock, username)
    browser = new_browser()
    assert location(browser.login(username)) == "/mfa/verify"
    return browser, secret


def pending_setup(new_browser, username="alice"):
    browser = new_browser()
    assert location(browser.login(username)) == "/mfa/setup"
    return browser, browser.setup_secret()


def wrong_code(secret, clock) -> str:
    """A well-formed code that matches no step near now."""
    valid = {pyotp.TOTP(secret).at(clock.timestamp() + 30 * s) for s in range(-3, 4)}
    return next(f"{n:06d}" for n in range(123456, 999999) if f"{n:06d}" not in valid)


def raise_on_audit(monkeypatch, event_name):
    """Make the audit write of one event fail as a locked or lost database would."""
    real_record = audit.record

    def record(event, *args, **kwargs):
        if event == event_name:
            raise peewee.OperationalError("database is locked")
        return real_record(event, *args, **kwargs)

    monkeypatch.setattr(audit, "record", record)


def cli(app, *args, input=None):
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args), input=input)


# ------------------------------------------------------------ a real threaded server


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


@pytest.fixture
def serve():
    """serve(app) -> base URL of a threaded werkzeug server for `app`."""
    servers = []

    def start(app):
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def http(base_url, cookie=None, name="smfa_session") -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    if cookie:
        session.cookies.set(name, cookie)
    return session


def form_token(response) -> str:
    field = CSRF_INPUT_RE.search(response.text)
    assert field, f"no CSRF field: {response.status_code}"
    return html.unescape(VALUE_RE.search(field.group(0)).group(1))


def http_signed_in_as(base_url, cookie, username) -> bool:
    response = http(base_url, cookie).get(base_url + "/", allow_redirects=False, timeout=30)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in response.text


def set_cookie_value(response) -> str | None:
    header = response.headers.get("Set-Cookie")
    if not header:
        return None
    return header.split(";", 1)[0].split("=", 1)[1]


# ------------------------------------------- SC-11: the password POST racing a GET


@pytest.mark.server
@pytest.mark.parametrize("method", ["totp", "disabled"])
def test_sc11_password_post_racing_protected_gets_never_shows_them(tmp_path, clock, serve, method):
    app = make_app(tmp_path, clock)
    with app.app_context():
        settings.set_mfa_method(method, actor="test")
    base = serve(app)
    expected_step = "/mfa/setup" if method == "totp" else "/"
    for round_no in range(12):
        first = http(base)
        token = form_token(first.get(base + "/login", timeout=HTTP_TIMEOUT))
        cookie = first.cookies.get("smfa_session")
        poster, home_getter, setup_getter = (http(base, cookie) for _ in range(3))
        posted, home, setup = together(
            lambda p=poster, t=token: p.post(
                base + "/login",
                data={"username": "alice", "password": PASSWORD, "csrf_token": t},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT,
            ),
            lambda g=home_getter: g.get(base + "/", allow_redirects=False, timeout=HTTP_TIMEOUT),
            lambda g=setup_getter: g.get(
                base + "/mfa/setup", allow_redirects=False, timeout=HTTP_TIMEOUT
            ),
        )
        what = f"round {round_no}"
        assert posted.status_code == 302 and posted.headers["Location"] == expected_step, what
        # The GETs carried the cookie from before the password: never a protected page,
        # never the set-up secret, never an error.
        for response in (home, setup):
            assert response.status_code == 302, what
            assert response.headers["Location"].startswith("/login"), what
            assert 'id="totp-secret"' not in response.text, what
        # The cookie state is sane: the new cookie is at its step, the old one is nobody.
        new_cookie = set_cookie_value(posted)
        assert new_cookie and new_cookie != cookie, what
        step = http(base, new_cookie).get(
            base + expected_step, allow_redirects=False, timeout=HTTP_TIMEOUT
        )
        assert step.status_code == 200, what
        assert not http_signed_in_as(base, cookie, "alice"), what
        with app.app_context():
            WebSession.delete().execute()
    with app.app_context():
        db.close()


# ------------------------------------- double-submitting the code forms (SC-06/SC-20)


def double_click(base, cookie, path, code, token):
    """The same form posted twice at once from one browser (one cookie)."""
    clicks = [http(base, cookie) for _ in range(2)]
    return together(
        *(
            lambda c=c: c.post(
                base + path,
                data={"code": code, "csrf_token": token},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT,
            )
            for c in clicks
        )
    )


@pytest.mark.server
def test_sc06_double_submit_of_verify_form_signs_in_once(tmp_path, clock, serve):
    app = make_app(tmp_path, clock)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    base = serve(app)
    for round_no in range(8):
        clock.advance(totp.PERIOD)  # no request in flight
        username = f"double{round_no}"
        secret = give_credential(app, clock, username)
        visitor = http(base)
        token = form_token(visitor.get(base + "/login", timeout=HTTP_TIMEOUT))
        response = visitor.post(
            base + "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        assert response.headers["Location"] == "/mfa/verify"
        token = form_token(visitor.get(base + "/mfa/verify", timeout=HTTP_TIMEOUT))
        cookie = visitor.cookies.get("smfa_session")
        code = pyotp.TOTP(secret).at(clock.timestamp())
        answers = double_click(base, cookie, "/mfa/verify", code, token)
        what = f"round {round_no}: {[(a.status_code, a.headers.get('Location')) for a in answers]}"
        assert all(a.status_code == 302 for a in answers), what
        assert [a.headers["Location"] for a in answers].count("/") == 1, what
        new_cookies = [c for c in map(set_cookie_value, answers) if c]
        assert len(new_cookies) == 1, what  # the browser ends with one, signed-in, cookie
        assert http_signed_in_as(base, new_cookies[0], username), what
        assert not http_signed_in_as(base, cookie, username), what
        assert [s for s in bound_sessions(app) if s[0] == username] == [
            (username, "authenticated")
        ], what
        ok = [e for e in events(app, "totp") if e.username == username and e.outcome == "ok"]
        assert len(ok) == 1, what
    with app.app_context():
        db.close()


@pytest.mark.server
def test_sc20_double_submit_of_setup_form_enrols_once(tmp_path, clock, serve):
    app = make_app(tmp_path, clock)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
        for n in range(6):
            create_user(f"setup{n}", PASSWORD)
    base = serve(app)
    for round_no in range(6):
        clock.advance(totp.PERIOD)
        username = f"setup{round_no}"
        visitor = http(base)
        token = form_token(visitor.get(base + "/login", timeout=HTTP_TIMEOUT))
        visitor.post(
            base + "/login",
            data={"username": username, "password": PASSWORD, "csrf_token": token},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
        page = visitor.get(base + "/mfa/setup", timeout=HTTP_TIMEOUT)
        secret = html.unescape(
            re.search(r'id="totp-secret"[^>]*>([^<]+)<', page.text).group(1)
        ).replace(" ", "")
        token = form_token(page)
        cookie = visitor.cookies.get("smfa_session")
        code = pyotp.TOTP(secret).at(clock.timestamp())
        answers = double_click(base, cookie, "/mfa/setup", code, token)
        what = f"round {round_no}: {[(a.status_code, a.headers.get('Location')) for a in answers]}"
        assert all(a.status_code == 302 for a in answers), what
        # One click set up the app and shows the recovery codes; the other is sent on.
        assert [a.headers["Location"] for a in answers].count("/mfa/recovery-codes") == 1, what
        with app.app_context():
            credentials = list(
                TotpCredential.select().where(TotpCredential.user == find_user(username))
            )
            assert len(credentials) == 1, what
            assert crypto.decrypt(credentials[0].secret_encrypted) == secret, what
        new_cookies = [c for c in map(set_cookie_value, answers) if c]
        assert len(new_cookies) == 1, what
        codes_page = http(base, new_cookies[0]).get(
            base + "/mfa/recovery-codes", allow_redirects=False, timeout=HTTP_TIMEOUT
        )
        assert codes_page.status_code == 200 and "I have saved these codes" in codes_page.text
    with app.app_context():
        db.close()


# ----------------------------------------------- SC-09: HEAD and OPTIONS everywhere

PLACEHOLDERS = {"username": "alice", "filename": "style.css"}
ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def endpoint_of(app, url: str) -> str:
    return app.url_map.bind("localhost").match(url, method="GET")[0]


def every_url(app) -> list[str]:
    urls = {
        ARGUMENT.sub(lambda m: PLACEHOLDERS[m.group(1)], rule.rule)
        for rule in app.url_map.iter_rules()
    }
    return sorted(urls)


@pytest.mark.parametrize("start", ["anonymous", "totp_setup", "totp_verify", "authenticated"])
def test_sc09_head_and_options_never_pass_the_guard_or_change_state(
    totp_app, new_browser, clock, start
):
    if start == "totp_verify":
        browser, _secret = pending_verify(new_browser, totp_app, clock)
    elif start == "totp_setup":
        browser, _secret = pending_setup(new_browser)
    elif start == "authenticated":
        browser = new_browser()
        browser.enrol("bob")
    else:
        browser = new_browser()
        browser.get("/login")
    home = {
        "anonymous": "/login",
        "totp_setup": "/mfa/setup",
        "totp_verify": "/mfa/verify",
        "authenticated": "/",
    }[start]
    cookie = browser.cookie()
    sessions_before = bound_sessions(totp_app)
    urls = every_url(totp_app)
    assert {"/", "/admin/", "/admin/mfa", "/logout", "/mfa/setup", "/mfa/verify"} <= set(urls)
    post_only = {rule.rule for rule in totp_app.url_map.iter_rules() if "GET" not in rule.methods}
    for url in urls:
        for method in ("HEAD", "OPTIONS"):
            response = browser.client.open(url, method=method)
            what = f"{method} {url} while {start}"
            assert response.status_code < 500, what
            if url.startswith("/api/"):
                assert response.status_code == 401, what  # no bearer token
                continue
            if url.startswith("/static/"):
                assert response.status_code == 200, what
                continue
            if url == "/healthz":  # the load balancer's probe: no session involved
                assert response.status_code == 200, what
                continue
            if url in post_only:
                # Only POST acts; HEAD is refused by routing, before any state is read.
                # OPTIONS is answered by Flask (or, where the state forbids it, redirected).
                assert response.status_code in (200, 302, 405), what
                if response.status_code == 302:
                    assert location(response).split("?")[0] == home, what
                continue
            if start == "authenticated" and url.startswith("/admin/"):
                assert response.status_code == 403, what  # bob is no administrator
                continue
            if url == home:
                assert response.status_code == 200, what
            elif guard.allowed(start, endpoint_of(totp_app, url)):
                # Another page of this state (say, the account page): it answers, or
                # sends on to a page of the same state when it has nothing to show.
                assert response.status_code in (200, 302), what
                if response.status_code == 302:
                    target = location(response).split("?")[0]
                    assert guard.allowed(start, endpoint_of(totp_app, target)), what
            else:
                assert response.status_code == 302, what
                assert location(response).split("?")[0] == home, what
    # Nothing changed: the same cookie, the same server state, the same step.
    assert browser.cookie() == cookie
    assert bound_sessions(totp_app) == sessions_before
    assert browser.get(home).status_code == 200


# ----------------------------------------------------------------- odd inputs (SC-31)

ODD_USERNAMES = [
    "alice\x00",
    "al\x00ice",
    "\u0430lice",  # Cyrillic a
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
    "alice\u200b",
    "ALİCE",
    "alice:root",
    "%61lice",
    "x" * 10_000,
    " ",
]


@pytest.mark.parametrize("username", ODD_USERNAMES, ids=lambda u: repr(u[:12]))
def test_sc31_odd_username_gets_the_generic_answer(app, new_browser, username):
    browser = new_browser()
    browser.get("/login")
    response = browser.post("/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 200
    assert messages(response) == [WRONG_PASSWORD_MESSAGE]
    assert bound_sessions(app) == []


@pytest.mark.parametrize("username", ["ALICE", " alice ", "\talice\n", "Alice"])
def test_username_case_and_surrounding_space_are_ignored(app, new_browser, username):
    browser = new_browser()
    browser.get("/login")
    response = browser.post("/login", {"username": username, "password": PASSWORD})
    assert location(response) == "/"
    assert signed_in_as(browser.client, "alice")


def test_sc15_odd_cookie_values_are_nobody(app, new_browser):
    alice = new_browser()
    alice.login()
    real = alice.cookie()
    with app.app_context():
        stored_hash = WebSession.get(WebSession.user == find_user("alice")).token_hash
    odd_values = [
        "a" * 129,
        "a" * 3000,
        "\u00e9" * 40,
        "\x00" * 10,
        real.upper(),
        real[:-1],
        "' OR 1=1 --",
        stored_hash,  # the database column, stolen, is not a cookie
        hash_token(real),
    ]
    for value in odd_values:
        client = app.test_client()
        client.set_cookie(cookie_name(app), value)
        response = client.get("/")
        assert response.status_code == 302, repr(value[:20])
        assert location(response).startswith("/login"), repr(value[:20])
    # Several cookies of the same name: never someone else, never an error.
    for header in (
        f"smfa_session=junk; smfa_session={real}",
        f"smfa_session={real}; smfa_session=junk",
        "smfa_session=; smfa_session=x",
    ):
        response = app.test_client().get("/", headers={"Cookie": header})
        page = response.get_data(as_text=True)
        assert response.status_code in (200, 302), header
        if response.status_code == 200:
            assert 'id="signed-in-user">alice<' in page, header
    # The real session is untouched by all of this.
    assert signed_in_as(alice.client, "alice")


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer   ",
        "Basic cm9vdDpwYXNzd29yZA==",
        "Bearer " + "x" * 10_000,
        "Bearer {token}x",
        "Bearer {token} extra",
        "Bearer\t{token}",
        "Token {token}",
        "{token}",
        "Bearer {upper}",
        "Bearer {token}\x00",
        "Bearer \u00e9",
    ],
    ids=lambda a: repr(a[:20]),
)
def test_sc24_malformed_authorization_header_is_401(totp_app, authorization):
    token = admin_token(totp_app)
    value = authorization.format(token=token, upper=token.upper())
    response = totp_app.test_client().delete(
        "/api/v1/users/alice/totp", headers={"Authorization": value}
    )
    assert response.status_code == 401
    assert response.is_json and response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", ["bearer {token}", "BEARER {token}", "Bearer  {token}"])
def test_sc24_bearer_scheme_is_case_insensitive(totp_app, authorization):
    token = admin_token(totp_app)
    response = totp_app.test_client().get(
        "/api/v1/users/alice/totp", headers={"Authorization": authorization.format(token=token)}
    )
    assert response.status_code == 200


ODD_API_NAMES = [
    "a%2Fbob",
    "..",
    "%2e%2e",
    ".%2e",
    "%C3%A9",
    "bob%00",
    "%ff",
    "b%C3%B6b",
    "a" * 5000,
    "bob%2F..%2Fbob",
    "*",
    "%25",
]


def test_sc24_odd_api_paths_never_500_and_never_reach_another_user(totp_app, new_browser):
    new_browser().enrol("bob")
    token = admin_token(totp_app)
    client = totp_app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for name in ODD_API_NAMES:
        for method in ("GET", "DELETE"):
            response = client.open(f"/api/v1/users/{name}/totp", method=method, headers=headers)
            what = f"{method} {name[:20]}"
            assert response.status_code == 404, what
            assert response.is_json, what
    assert credential_of(totp_app, "bob") is not None


NEXT_VALUES = [
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%5Cevil.example",
    "%5C%5Cevil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d%0aSet-Cookie:%20x=1",
    "%20//evil.example",
    "%E3%80%80//evil.example",
    "/./%2Fevil.example",
    "/%252F%252Fevil.example",
    "https%3A%2F%2Fevil.example",
    "javascript%3Aalert(1)",
    "//%2Fevil.example",
    "/%00",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("target", NEXT_VALUES, ids=lambda t: t[:30])
def test_sc29_encoded_next_values_stay_on_this_site(totp_app, new_browser, clock, target):
    secret = give_credential(totp_app, clock, "alice")
    fresh = new_browser()
    fresh.get("/login?next=" + target)
    response = fresh.post("/login?next=" + target, {"username": "alice", "password": PASSWORD})
    assert location(response) == "/mfa/verify"
    fresh.get("/mfa/verify")
    response = fresh.post("/mfa/verify", {"code": fresh.code(secret)})
    landing = location(response)
    assert landing and landing.startswith("/") and not landing.startswith("//")
    assert "\\" not in landing and landing.isprintable()  # browsers read "\" and tabs too
    resolved = urlsplit(urljoin("https://mfa.example/", landing))
    assert (resolved.scheme, resolved.netloc) == ("https", "mfa.example")


# --------------------------- a database error half-way through a multi-step change


def test_reset_database_error_half_way_is_503_and_changes_nothing(
    totp_app, new_browser, clock, monkeypatch
):
    alice = new_browser()
    alice.enrol()
    with totp_app.app_context():
        MfaThrottle.update(failures=3).execute()
    token = admin_token(totp_app)

    def lost_database(_user):
        raise peewee.OperationalError("database is locked")

    # Called after the credential and the throttle rows were already deleted.
    monkeypatch.setattr(sessions, "end_sessions_of", lost_database)
    response = totp_app.test_client().delete(
        "/api/v1/users/alice/totp", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert "Traceback" not in response.get_data(as_text=True)
    assert credential_of(totp_app, "alice") is not None
    assert failures(totp_app, "alice") == 3
    assert signed_in_as(alice.client, "alice")
    assert events(totp_app, "totp_reset") == []


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


def test_verify_database_error_after_step_consumed_leaves_nothing_half_done(
    totp_app, new_browser, clock, monkeypatch
):
    browser, secret = pending_verify(new_browser, totp_app, clock)
    raise_on_audit(monkeypatch, "totp")
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert response.status_code == 503
    monkeypatch.undo()
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert location(response) == "/"
    assert events(totp_app, "totp_replay") == []


def test_sc25_admin_setting_database_error_changes_nothing_unaudited(
    app, new_browser, monkeypatch
):
    admin = new_browser()
    admin.login("root")
    admin.get("/admin/mfa")
    raise_on_audit(monkeypatch, "mfa_method_changed")
    response = admin.post("/admin/mfa", {"mfa_method": "totp"})
    assert response.status_code == 503
    with app.app_context():
        changed = settings.mfa_method() == "totp"
    assert changed == bool(events(app, "mfa_method_changed"))


def test_post_while_database_unreachable_is_503(tmp_path, clock):
    app = make_app(tmp_path, clock)
    client = app.test_client()
    token = VALUE_RE.search(
        CSRF_INPUT_RE.search(client.get("/login").get_data(as_text=True)).group(0)
    ).group(1)
    db.initialize(open_db("sqlite:////nonexistent-dir/x.sqlite3", 0.1))
    response = client.post(
        "/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 503
    assert "briefly unavailable" in response.get_data(as_text=True)


# ------------------------------------------------------------ state-machine corners


@pytest.mark.parametrize("step", ["totp_setup", "totp_verify"])
def test_sc27_method_disabled_while_user_pending_then_submit(totp_app, new_browser, clock, step):
    if step == "totp_setup":
        browser, secret = pending_setup(new_browser)
        path = "/mfa/setup"
    else:
        browser, secret = pending_verify(new_browser, totp_app, clock)
        path = "/mfa/verify"
    with totp_app.app_context():
        settings.set_mfa_method("disabled", actor="root")
    response = browser.post(path, {"code": wrong_code(secret, clock)})
    assert response.status_code == 302 and location(response) == path
    response = browser.submit_code(path, {"code": browser.code(secret)})
    assert response.status_code == 302 and location(response) == "/"
    assert signed_in_as(browser.client, "alice")
    # The credential is kept (SC-27: existing credentials are not dropped).
    with totp_app.app_context():
        credential = totp.credential_of(find_user("alice"))
        assert crypto.decrypt(credential.secret_encrypted) == secret


def test_sc09_setup_post_after_setup_finished_in_this_browser_is_sent_home(
    totp_app, browser, clock
):
    browser.login()
    secret = browser.setup_secret()
    token = browser.token  # a second tab still shows the set-up form
    assert location(browser.submit_code("/mfa/setup", browser.code(secret))) == "/"
    clock.advance(totp.PERIOD)
    response = browser.client.post(
        "/mfa/setup", data={"code": browser.code(secret), "csrf_token": token}
    )
    assert response.status_code in (302, 400)
    assert signed_in_as(browser.client, "alice")
    assert len(bound_sessions(totp_app)) == 1


def test_sc20_setup_finished_elsewhere_is_not_a_wrong_code(totp_app, new_browser, clock):
    first, first_secret = pending_setup(new_browser)
    second, second_secret = pending_setup(new_browser)
    assert location(first.submit_code("/mfa/setup", first.code(first_secret))) == "/"
    clock.advance(totp.PERIOD)
    response = second.post("/mfa/setup", {"code": second.code(second_secret)})
    assert location(response) != "/mfa/setup"
    assert failures(totp_app, "alice") == 0


def test_sc26_reset_racing_the_password_step_leaves_no_dead_end(
    totp_app, new_browser, clock, monkeypatch
):
    secret = give_credential(totp_app, clock, "alice")
    real_password_accepted = state.password_accepted

    def reset_commits_meanwhile(web_session, user, *args, **kwargs):
        target = real_password_accepted(web_session, user, *args, **kwargs)
        reset.reset_totp(user, actor="root")
        return target

    monkeypatch.setattr(state, "password_accepted", reset_commits_meanwhile)
    browser = new_browser()
    browser.login()
    monkeypatch.undo()
    response = browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert failures(totp_app, "alice") == 0
    assert location(response).startswith(("/login", "/mfa/setup"))


def test_sc08_reset_during_a_code_attempt_is_not_a_500(totp_app, new_browser, clock, monkeypatch):
    browser, secret = pending_verify(new_browser, totp_app, clock)
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


# --------------------------------------------------------------- throttle edge cases


def test_sc07_clock_going_back_does_not_throttle_before_five_failures(
    totp_app, new_browser, clock
):
    browser, secret = pending_verify(new_browser, totp_app, clock)
    browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    assert failures(totp_app, "alice") == 1
    code = browser.code(secret)  # the code of the step that was current a moment ago
    clock.advance(-5)  # the clock is stepped back, or the next request hits another server
    response = browser.post("/mfa/verify", {"code": code})
    assert location(response) == "/"


def test_sc08_clock_going_back_never_asks_for_more_than_the_cap(totp_app, new_browser, clock):
    browser, secret = pending_verify(new_browser, totp_app, clock)
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


# ------------------------------------------------------------ sessions and deployment


# ---------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "args",
    [("mfa", "method"), ("mfa", "reset", "alice"), ("token", "create", "root")],
)
def test_cli_before_init_db_says_so(tmp_path, clock, args):
    (tmp_path / "empty").mkdir()
    empty = f"sqlite:///{tmp_path}/empty/db.sqlite3"  # a database with no tables yet
    app = create_app(test_config(tmp_path / "empty", clock, DATABASE_URL=empty))
    result = cli(app, *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "init-db" in result.output


def test_cli_rotate_keys_without_the_old_key_gives_a_clear_message(
    totp_app, browser, tmp_path, clock
):
    browser.enrol()
    with totp_app.app_context():
        before = TotpCredential.get().secret_encrypted
    config = test_config(tmp_path, clock, MFA_ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    wrong_keys = create_app(config)  # the same database, but the old key is gone
    result = cli(wrong_keys, "mfa", "rotate-keys")
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "key" in result.output.lower()
    with wrong_keys.app_context():
        assert TotpCredential.get().secret_encrypted == before


def test_cli_user_create_too_long_password_says_too_long(app):
    result = cli(app, "user", "create", "carol", "--password-stdin", input="p" * 2000 + "\n")
    assert result.exit_code == 1
    assert "at least" not in result.output
    with app.app_context():
        assert find_user("carol") is None


@pytest.mark.parametrize(
    "username", ["a\x00b", "x" * 10_000, "al ice", "alice:x", "\u00e9mile", "_under", ""]
)
def test_cli_user_create_odd_username_gives_a_clear_message(app, username):
    result = cli(app, "user", "create", username, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ")
    with app.app_context():
        assert User.select().count() == 3  # alice, bob, root


def test_cli_mfa_reset_unusual_names_give_a_clear_message(app):
    for username in ("x" * 10_000, "\u212aim", "ALICE\x00"):
        result = cli(app, "mfa", "reset", username)
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert result.output.startswith("Error: ")


def test_sc26_reset_committing_during_setup_keeps_no_credential(
    totp_app, new_browser, monkeypatch
):
    """An admin reset that ends the session while its set-up code is being saved: the
    credential is rolled back with the session, and the browser is sent to sign in."""
    browser, secret = pending_setup(new_browser)
    real_enrol = totp.enrol

    def enrol_while_reset(user, *args):
        credential = real_enrol(user, *args)
        # The reset's session delete lands before this request writes its session.
        WebSession.delete().where(WebSession.user == user).execute()
        return credential

    monkeypatch.setattr(totp, "enrol", enrol_while_reset)
    response = browser.post("/mfa/setup", {"code": browser.code(secret)})
    assert location(response) == "/login"
    with totp_app.app_context():
        assert TotpCredential.select().count() == 0
    assert not signed_in_as(browser.client, "alice")


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
