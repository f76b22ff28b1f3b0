"""core/metrics and web/metrics (SC-39): `/metrics` is 404 without METRICS_TOKEN and
401 without the right bearer token; sign-ins are counted by step and outcome where
they are decided; gateway decisions by `metrics.gateway_check`; request durations by
endpoint name; and no username, address or secret reaches a label, after real
sign-ins, in this process and through two gunicorn workers."""

from __future__ import annotations

import contextlib
import re

import pyotp
import pytest
import requests
from prometheus_client import REGISTRY
from support import servers
from support.app import PASSWORD, make_app
from support.client import Browser
from support.db import set_remember_days
from support.oath import fresh_code, wrong_code
from support.pages import location
from support.paths import ROOT
from support.servers import app_env
from support.steps import pending_verify

from standalone_mfa.core import metrics
from standalone_mfa.directory import settings, tokens
from standalone_mfa.directory.users import create_user, find_user

TOKEN = "metrics-token-for-the-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def count(step, outcome) -> float:
    return REGISTRY.get_sample_value("smfa_signin_total", {"step": step, "outcome": outcome})


class Counts:
    """The sign-in counters' changes since it was made (the registry is the process's)."""

    def __init__(self):
        self.before = self.now()

    @staticmethod
    def now():
        return {(s, o): count(s, o) for s in metrics.SIGNIN_STEPS for o in metrics.SIGNIN_OUTCOMES}

    def changed(self) -> dict:
        after = self.now()
        return {k: after[k] - self.before[k] for k in after if after[k] != self.before[k]}


@pytest.fixture
def metrics_app(tmp_path, clock):
    app = make_app(tmp_path, clock, METRICS_TOKEN=TOKEN)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    return app


# --- who may read them


def test_sc39_metrics_are_404_while_no_token_is_configured(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.options("/metrics").status_code == 404  # not even its methods
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer None"}).status_code == 404


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
    ],
)
def test_sc39_metrics_without_the_right_bearer_token_are_401(metrics_app, header):
    headers = {} if header is None else {"Authorization": header}
    response = metrics_app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "smfa_" not in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers


def test_sc39_metrics_with_the_token_no_cookie_no_session(metrics_app):
    before = Counts()
    client = metrics_app.test_client()
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    body = response.get_data(as_text=True)
    for name in (
        "smfa_signin_total",
        "smfa_gateway_checks_total",
        "smfa_request_duration_seconds_bucket",
        "smfa_db_pool_connections_in_use",
        "smfa_db_pool_connections_max",
    ):
        assert name in body
    assert "Set-Cookie" not in response.headers
    assert before.changed() == {}  # a scrape is not a sign-in
    lowercase = {"bearer " + TOKEN, "bearer  " + TOKEN}
    for header in lowercase:  # the scheme is case-insensitive (RFC 7235)
        assert client.get("/metrics", headers={"Authorization": header}).status_code == 200


def test_the_token_is_compared_in_constant_time():
    source = (ROOT / "standalone_mfa" / "web" / "metrics.py").read_text()
    assert "hmac.compare_digest(" in source
    assert "== expected" not in source and "expected ==" not in source


# --- what is counted


def test_password_steps_are_counted_by_outcome(metrics_app, clock):
    before = Counts()
    browser = Browser(metrics_app, clock)
    browser.login("bob", "wrong password")
    browser.login("nobody", "wrong password")
    assert location(browser.login("bob")) == "/mfa/setup"
    assert before.changed() == {("password", "failed"): 2, ("password", "ok"): 1}

    before = Counts()
    limit = metrics_app.config["PASSWORD_BACKOFF_AFTER"]
    for _ in range(limit + 1):
        Browser(metrics_app, clock).login("alice", "wrong password")
    changed = before.changed()
    assert changed[("password", "failed")] == limit
    assert changed[("password", "throttled")] == 1


def test_codes_recovery_codes_replays_locks_and_devices_are_counted(metrics_app, clock):
    def new_browser():
        return Browser(metrics_app, clock)

    set_remember_days(metrics_app, 30)
    first = Browser(metrics_app, clock)
    secret = first.enrol("alice")
    codes = first.recovery_codes
    first.logout()
    clock.advance(30)

    before = Counts()
    browser = pending_verify(new_browser)
    browser.post("/mfa/verify", {"code": wrong_code(secret, clock)})
    used = fresh_code(browser, secret)
    response = browser.post("/mfa/verify", {"code": used, "remember_device": "y"})
    assert location(response) == "/"
    changed = before.changed()
    assert changed[("code", "failed")] == 1
    assert changed[("code", "ok")] == 1

    # The same code again, from another browser: a replay.
    before = Counts()
    thief = pending_verify(new_browser)
    thief.post("/mfa/verify", {"code": used})
    assert before.changed() == {("password", "ok"): 1, ("code", "replay"): 1}

    # The remembered browser skips the code.
    browser.logout()
    before = Counts()
    assert location(browser.login("alice")) == "/"
    assert before.changed() == {("password", "ok"): 1, ("remembered_device", "ok"): 1}

    # A recovery code.
    before = Counts()
    other = pending_verify(new_browser)
    other.get("/mfa/recovery")
    assert location(other.post("/mfa/recovery", {"recovery_code": codes[0]})) == "/"
    assert before.changed() == {("password", "ok"): 1, ("recovery_code", "ok"): 1}

    # Locked: wrong codes until the lock, then one more is refused as locked.
    with metrics_app.app_context():
        from standalone_mfa.core.models import MfaThrottle

        lock_after = metrics_app.config["MFA_LOCK_AFTER"]
        MfaThrottle.update(failures=lock_after, last_failure_at=clock.now()).execute()
    before = Counts()
    locked = pending_verify(new_browser)
    locked.post("/mfa/verify", {"code": fresh_code(locked, secret, 1)})
    assert before.changed() == {("password", "ok"): 1, ("code", "locked"): 1}


def test_metric_labels_come_from_fixed_lists_only():
    with pytest.raises(ValueError):
        metrics.signin("password", "alice")
    with pytest.raises(ValueError):
        metrics.signin("alice", "ok")
    with pytest.raises(ValueError):
        metrics.gateway_check("198.51.100.7")


def test_gateway_checks_are_counted_by_decision():
    def value(decision):
        return REGISTRY.get_sample_value("smfa_gateway_checks_total", {"decision": decision})

    before = {d: value(d) for d in metrics.GATEWAY_DECISIONS}
    metrics.gateway_check("allow")
    metrics.gateway_check("allow")
    metrics.gateway_check("sign_in")
    after = {d: value(d) for d in metrics.GATEWAY_DECISIONS}
    assert {d: after[d] - before[d] for d in after} == {
        "allow": 2,
        "deny": 0,
        "sign_in": 1,
        "challenge": 0,
    }


def test_request_durations_are_labelled_by_endpoint_never_by_path(metrics_app):
    def seen(endpoint):
        name = "smfa_request_duration_seconds_count"
        return REGISTRY.get_sample_value(name, {"endpoint": endpoint}) or 0

    before = (seen("auth.login"), seen(metrics.UNMATCHED))
    client = metrics_app.test_client()
    client.get("/login")
    client.get("/login?next=/secret-path-of-someone")
    client.get("/no/such/page/alice")
    assert (seen("auth.login"), seen(metrics.UNMATCHED)) == (before[0] + 2, before[1] + 1)
    body = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert "/no/such" not in body and "secret-path" not in body


def test_sc39_no_username_address_or_secret_in_the_metrics(metrics_app, clock):
    """After real sign-ins (right and wrong, codes, recovery codes, an API call) from a
    known address, nothing that names the person or their secrets is in the output."""
    username = "sc39-person-xq7"
    with metrics_app.app_context():
        create_user(username, PASSWORD)
        api_token = tokens.create_token(find_user("root"), actor="test")
    ip = "198.51.100.77"
    browser = Browser(metrics_app, clock)
    browser.client.environ_base["REMOTE_ADDR"] = ip
    browser.login(username, "a wrong password 123")
    secret = browser.enrol(username)
    recovery_codes = browser.recovery_codes
    browser.logout()
    clock.advance(30)
    browser.login(username)
    browser.post("/mfa/verify", {"code": "000000"})
    browser.post("/mfa/verify", {"code": pyotp.TOTP(secret).at(clock.now())})
    session_cookie = browser.cookie()
    metrics_app.test_client().get(
        f"/api/v1/users/{username}/totp", headers={"Authorization": f"Bearer {api_token}"}
    )
    response = metrics_app.test_client().get("/metrics", headers=AUTH)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    forbidden = [username, ip, PASSWORD, secret, api_token, TOKEN, session_cookie]
    forbidden += [c.replace("-", "") for c in recovery_codes] + recovery_codes
    for value in forbidden:
        assert value and value not in body, value
    for label_value in re.findall(r'="([^"]*)"', body):
        assert re.fullmatch(r"[-a-z_.+0-9A-Z]*", label_value), label_value


# --- two gunicorn workers, one picture


@contextlib.contextmanager
def gunicorn_workers(app, tmp_path, workers=2):
    """`gunicorn wsgi:app` (gunicorn.conf.py: the metrics' multiprocess folder) with
    `workers` processes on the test app's database; yields the base URL."""
    env = app_env(
        app, METRICS_TOKEN=TOKEN, PASSWORD_HASH_METHOD=app.config["PASSWORD_HASH_METHOD"]
    )
    log = tmp_path / "gunicorn.log"
    with servers.gunicorn("wsgi:app", log, env, workers=workers) as url:
        yield url
    assert "Traceback" not in log.read_text(), log.read_text()


def scrape(url) -> str:
    response = requests.get(url + "/metrics", headers={**AUTH, "Connection": "close"}, timeout=30)
    assert response.status_code == 200
    return response.text


def sample(body: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            series, value = line.rsplit(" ", 1)
            found = series[len(name) :].strip("{}").split(",")
            if sorted(found) == sorted(wanted.split(",")) or (not labels and series == name):
                return float(value)
    return 0.0


@pytest.mark.server
def test_sc39_sign_ins_through_two_gunicorn_workers_are_counted_once_each(tmp_path, clock):
    app = make_app(tmp_path, clock)
    with app.app_context():
        settings.set_mfa_method("disabled", actor="test")
    with gunicorn_workers(app, tmp_path) as url:
        start = scrape(url)
        ok, failed = 6, 5
        for n in range(ok + failed):
            with requests.Session() as person:  # a new connection each: any worker
                person.headers["Connection"] = "close"
                page = person.get(url + "/login", timeout=30)
                token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
                password = PASSWORD if n < ok else "wrong"
                answer = person.post(
                    url + "/login",
                    data={"username": "bob", "password": password, "csrf_token": token.group(1)},
                    allow_redirects=False,
                    timeout=30,
                )
                assert answer.status_code == (302 if n < ok else 200)
        for _ in range(6):  # whichever worker answers, the same totals
            body = scrape(url)
            assert (
                sample(body, "smfa_signin_total", step="password", outcome="ok")
                == sample(start, "smfa_signin_total", step="password", outcome="ok") + ok
            )
            assert sample(body, "smfa_signin_total", step="password", outcome="failed") == (
                sample(start, "smfa_signin_total", step="password", outcome="failed") + failed
            )
            # Each live worker's pool is in the sum: both workers are seen.
            size = app.config["DATABASE_POOL_SIZE"]
            assert sample(body, "smfa_db_pool_connections_max") == 2 * size
            assert "bob" not in body and "127.0.0.1" not in body
        requests_seen = sample(body, "smfa_request_duration_seconds_count", endpoint="auth.login")
        assert requests_seen >= 2 * (ok + failed)
