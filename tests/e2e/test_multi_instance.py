"""Two app instances on one PostgreSQL database, as deployed: two gunicorn processes
(two workers with threads each) on their own ports, sharing the database and the keys
through one instance folder. A sign-in started on one finishes on the other; of 20
simultaneous submissions of one code spread over both, exactly one signs in (SC-06);
a throttle reached through one instance holds on the other (SC-07).

The real clock runs here: codes come from pyotp at time.time(), and every round uses a
new user so that no round inherits another's used step or failure count.
"""

from __future__ import annotations

import html
import itertools
import re
import time

import pyotp
import pytest
import requests
from support.app import PASSWORD
from support.client import together
from support.db import POSTGRES_URL, needs_postgresql
from support.oath import wrong_code
from support.pages import CSRF_INPUT_RE, VALUE_RE
from support.servers import HTTP_TIMEOUT, portal_instances

from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.models import AuditEvent, TotpCredential
from standalone_mfa.directory.users import create_user, find_user
from standalone_mfa.factors import throttle, totp

pytestmark = [pytest.mark.server, needs_postgresql]

ROUNDS = 20
CONTENDERS = 20
_names = itertools.count()


def fresh_name(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


# ------------------------------------------------------------------ the instances


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(app in this process, [base URL of instance A, of instance B])."""
    folder = tmp_path_factory.mktemp("multi")
    settings = {"DATABASE_URL": POSTGRES_URL}
    with portal_instances(folder, settings, count=2, threads=8) as deployed:
        yield deployed


def user_with_credential(app, prefix: str) -> tuple[str, str]:
    """A new user whose authenticator is set up (no step of now used yet); its secret."""
    username = fresh_name(prefix)
    with app.app_context():
        user = create_user(username, PASSWORD)
        secret = totp.new_secret()
        assert totp.enrol(user, secret, int(time.time()) // totp.PERIOD - 2) is not None
    return username, secret


# ------------------------------------------------------------------ the browsers


class Visitor:
    """One browser. Cookies ignore the port, as a browser's do: one cookie jar serves
    both instances, exactly as it would behind one load-balanced name."""

    def __init__(self):
        self.http = requests.Session()
        self.http.trust_env = False
        # A new connection per request: a kept-alive one that the server closes as it
        # idles (gunicorn's 2 s keep-alive) would fail the next POST, which is not retried.
        self.http.headers["Connection"] = "close"
        self.token = None

    def get(self, base_url: str, path: str) -> requests.Response:
        response = self.http.get(base_url + path, allow_redirects=False, timeout=HTTP_TIMEOUT)
        field = CSRF_INPUT_RE.search(response.text)
        if field:
            self.token = html.unescape(VALUE_RE.search(field.group(0)).group(1))
        return response

    def post(self, base_url: str, path: str, data: dict) -> requests.Response:
        return self.http.post(
            base_url + path,
            data={"csrf_token": self.token, **data},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )

    def login(self, base_url: str, username: str, password: str = PASSWORD):
        self.get(base_url, "/login")
        return self.post(base_url, "/login", {"username": username, "password": password})

    def signed_in_as(self, base_url: str) -> str | None:
        response = self.get(base_url, "/")
        match = re.search(r'id="signed-in-user">([^<]+)<', response.text)
        return match.group(1) if response.status_code == 200 and match else None


# ------------------------------------------------------------------ the tests


def test_sign_in_started_on_one_instance_finishes_on_the_other(cluster):
    app, (a, b) = cluster
    username, secret = user_with_credential(app, "traveller")
    visitor = Visitor()
    response = visitor.login(a, username)
    assert (response.status_code, response.headers["Location"]) == (302, "/mfa/verify")
    assert visitor.get(b, "/mfa/verify").status_code == 200
    response = visitor.post(b, "/mfa/verify", {"code": pyotp.TOTP(secret).now()})
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    assert visitor.signed_in_as(a) == username
    assert visitor.signed_in_as(b) == username

    visitor.post(a, "/logout", {})
    assert visitor.get(b, "/").headers["Location"] == "/login"


def test_sc06_same_code_on_20_pending_logins_across_two_instances_signs_in_one(cluster):
    app, urls = cluster
    for round_no in range(ROUNDS):
        username, secret = user_with_credential(app, "racer")
        visitors = [Visitor() for _ in range(CONTENDERS)]
        # Half start on each instance, and every code goes to the other one. The
        # passwords go five at a time: ten at once for one username would be ten
        # failures in flight (each attempt is counted before it is checked) and meet
        # the password back-off.
        together(*[lambda v=v, i=i: v.get(urls[i % 2], "/login") for i, v in enumerate(visitors)])
        for group in range(0, CONTENDERS, 5):
            logins = together(
                *[
                    lambda v=v, i=i, u=username: v.post(
                        urls[i % 2], "/login", {"username": u, "password": PASSWORD}
                    )
                    for i, v in list(enumerate(visitors))[group : group + 5]
                ]
            )
            assert [r.headers.get("Location") for r in logins] == ["/mfa/verify"] * 5
        forms = together(
            *[
                lambda v=v, i=i: v.get(urls[(i + 1) % 2], "/mfa/verify")
                for i, v in enumerate(visitors)
            ]
        )
        assert [r.status_code for r in forms] == [200] * CONTENDERS, f"round {round_no}"

        code = pyotp.TOTP(secret).now()
        answers = together(
            *[
                lambda v=v, i=i, c=code: v.post(urls[(i + 1) % 2], "/mfa/verify", {"code": c})
                for i, v in enumerate(visitors)
            ]
        )

        assert [r.status_code for r in answers] == [302] * CONTENDERS, f"round {round_no}"
        winners = [i for i, r in enumerate(answers) if r.headers["Location"] == "/"]
        assert len(winners) == 1, f"round {round_no}: {len(winners)} sign-ins with one code"
        names = together(
            *[lambda v=v, i=i: v.signed_in_as(urls[i % 2]) for i, v in enumerate(visitors)]
        )
        signed_in = [i for i, name in enumerate(names) if name == username]
        assert signed_in == winners, f"round {round_no}"
        with app.app_context():
            user = find_user(username)
            accepted = AuditEvent.select().where(
                (AuditEvent.username == username)
                & (AuditEvent.event == "totp")
                & (AuditEvent.outcome == "ok")
            )
            assert accepted.count() == 1, f"round {round_no}"
            credential = TotpCredential.get(TotpCredential.user == user)
            assert credential.last_used_step >= int(time.time()) // totp.PERIOD - 1


def test_sc07_throttle_reached_on_one_instance_holds_on_the_other(cluster):
    app, (a, b) = cluster
    username, secret = user_with_credential(app, "guessed")
    waiting = Visitor()  # the account's owner, whose code step is open on B
    assert waiting.login(b, username).headers["Location"] == "/mfa/verify"
    assert waiting.get(b, "/mfa/verify").status_code == 200

    # Wrong codes through both instances: 5 end the pending login; each further one
    # comes after the back-off and is counted by the same per-account counter.
    guesser = Visitor()
    for failure in range(1, DEFAULTS["MFA_BACKOFF_AFTER"] + 3):
        instance = a if failure <= DEFAULTS["MFA_BACKOFF_AFTER"] or failure % 2 else b
        if guesser.get(instance, "/mfa/verify").status_code != 200:
            assert guesser.login(instance, username).headers["Location"] == "/mfa/verify"
            guesser.get(instance, "/mfa/verify")
        time.sleep(
            throttle.delay_after(
                failure - 1, DEFAULTS["MFA_BACKOFF_AFTER"], DEFAULTS["BACKOFF_MAX_SECONDS"]
            )
        )
        response = guesser.post(instance, "/mfa/verify", {"code": wrong_code(secret)})
        assert response.status_code == 302
    with app.app_context():
        assert throttle.failures(find_user(username)) == DEFAULTS["MFA_BACKOFF_AFTER"] + 2

    # The right code, on B, within the back-off that the last failure started (4 s).
    response = waiting.post(b, "/mfa/verify", {"code": pyotp.TOTP(secret).now()})
    assert response.headers["Location"] == "/mfa/verify"
    assert "Too many wrong codes. Wait" in waiting.get(b, "/mfa/verify").text
    assert waiting.signed_in_as(b) is None
    with app.app_context():
        credential = TotpCredential.get(TotpCredential.user == find_user(username))
        assert credential.last_used_step < int(time.time()) // totp.PERIOD - 1  # unused


def test_sc07_password_throttle_reached_on_one_instance_holds_on_the_other(cluster):
    app, (a, b) = cluster
    username, _secret = user_with_credential(app, "sprayed")
    guesser = Visitor()
    failures = DEFAULTS["PASSWORD_BACKOFF_AFTER"] + 2
    for failure in range(1, failures + 1):
        time.sleep(
            throttle.delay_after(
                failure - 1, DEFAULTS["PASSWORD_BACKOFF_AFTER"], DEFAULTS["BACKOFF_MAX_SECONDS"]
            )
        )
        response = guesser.login(a if failure % 2 else b, username, "not the password")
        assert response.status_code == 200
        assert "Too many" not in response.text, f"failure {failure} was throttled"

    owner = Visitor()
    response = owner.login(b, username)
    assert response.status_code == 200
    assert "Too many failed sign-ins for this username. Wait" in response.text
    response = owner.login(a, username)
    assert "Too many failed sign-ins for this username. Wait" in response.text
