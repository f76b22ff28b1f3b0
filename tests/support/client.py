"""The test client as a person's browser (`Browser`), raw clients with a chosen cookie,
HTTP sessions against a live server, the CLI and the API, and requests sent together."""

from __future__ import annotations

import html
import re
import threading

import pyotp
import requests

from standalone_mfa.web.cookies import DEVICE_COOKIE, TRUSTED_BROWSER_COOKIE  # noqa: F401 (re-exported)
from standalone_mfa.web.session_cookie import ANONYMOUS_COOKIE
from support.app import PASSWORD
from support.pages import RECOVERY_CODE_RE, SECRET_RE, csrf_from


class Browser:
    """One person's browser (one cookie jar) using the app through the test client."""

    def __init__(self, app, clock):
        self.app = app
        self.clock = clock
        self.client = app.test_client()
        self.token = None
        self.secret = None  # the TOTP secret of the last enrol()

    def get(self, path, **kwargs):
        response = self.client.get(path, **kwargs)
        text = response.get_data(as_text=True)
        if "csrf_token" in text:
            self.token = csrf_from(text)
        return response

    def post(self, path, data=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf:
            if self.token is None:
                self.get("/login")
            data.setdefault("csrf_token", self.token)
        return self.client.post(path, data=data, **kwargs)

    def login(self, username="alice", password=PASSWORD, next=None):
        path = "/login" + (f"?next={next}" if next else "")
        self.get(path)
        response = self.post(path, {"username": username, "password": password})
        if response.status_code == 302:
            # As a browser would: load the next page (and its fresh CSRF token).
            self.get(response.headers["Location"])
        return response

    def setup_secret(self) -> str:
        page = self.get("/mfa/setup").get_data(as_text=True)
        match = SECRET_RE.search(page)
        assert match, "no secret on the set-up page"
        return html.unescape(match.group(1)).replace(" ", "")

    def code(self, secret, steps=0) -> str:
        return pyotp.TOTP(secret).at(self.clock.timestamp() + 30 * steps)

    def enrol(self, username="alice"):
        """Sign in for the first time with TOTP on, set up and save the recovery codes
        (kept in `self.recovery_codes`); returns the secret."""
        self.login(username)
        secret = self.setup_secret()
        response = self.post("/mfa/setup", {"code": self.code(secret)})
        assert response.status_code == 302, response.get_data(as_text=True)
        assert response.headers["Location"] == "/mfa/recovery-codes"
        self.save_recovery_codes()
        self.secret = secret
        return secret

    def submit_code(self, path, data):
        """Post a code form (a code, or the form's fields) as a person would: after a
        set-up, read and save the recovery codes too. The last response."""
        if isinstance(data, str):
            data = {"code": data}
        response = self.post(path, data)
        if response.headers.get("Location") == "/mfa/recovery-codes":
            return self.save_recovery_codes()
        return response

    def save_recovery_codes(self):
        """Read the recovery codes shown after set-up, then "I have saved these codes"."""
        page = self.page("/mfa/recovery-codes")
        self.recovery_codes = RECOVERY_CODE_RE.findall(page)
        assert len(self.recovery_codes) == 10, page
        return self.post("/mfa/recovery-codes")

    def logout(self):
        self.get("/")
        return self.post("/logout")

    def cookie(self):
        cookie = self.client.get_cookie(self.app.config["SESSION_COOKIE_NAME"])
        return cookie.value if cookie else None

    def anonymous_cookie(self):
        """The signed cookie of an anonymous session (which has no row)."""
        cookie = self.client.get_cookie(ANONYMOUS_COOKIE)
        return cookie.value if cookie else None

    def cookies(self) -> dict[str, str]:
        """The app's cookies this browser holds, by name."""
        names = (self.app.config["SESSION_COOKIE_NAME"], ANONYMOUS_COOKIE, DEVICE_COOKIE)
        held = {name: self.client.get_cookie(name) for name in names}
        return {name: cookie.value for name, cookie in held.items() if cookie}

    def page(self, path, **kwargs) -> str:
        return self.get(path, **kwargs).get_data(as_text=True)


def together(*actions, timeout: float = 30):
    """Run the callables on threads released at once by one barrier; their results in
    order. Fails if one raised or is stuck."""
    barrier = threading.Barrier(len(actions))
    results: list = [None] * len(actions)

    def worker(i):
        try:
            barrier.wait(timeout=timeout)
            results[i] = actions[i]()
        except BaseException as exc:  # reported below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * timeout)
    assert not any(thread.is_alive() for thread in threads), "a request is stuck"
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} requests failed, first: {errors[0]!r}"
    return results


# A value for each argument of a URL rule, to visit every route: `ARGUMENT` finds them.
PLACEHOLDERS = {
    "username": "alice",
    "filename": "style.css",
    "key_id": "1",
    "client_id": "nosuchclient0000",
}


ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def signed_in_as(browser_or_client, username) -> bool:
    """The home page answers and names `username` as the signed-in user."""
    client = getattr(browser_or_client, "client", browser_or_client)
    response = client.get("/")
    page = response.get_data(as_text=True)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in page


def client_with_cookie(app, value):
    """A fresh client (another person's browser) that presents `value` as its cookie."""
    client = app.test_client()
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return client


def client_with_anonymous_cookie(app, value):
    """A fresh client that presents `value` as its anonymous session's signed cookie."""
    client = app.test_client()
    client.set_cookie(ANONYMOUS_COOKIE, value)
    return client


def cli(app, *args, input=None):
    # `flask --app standalone_mfa ...` (FlaskGroup) pushes an app context for every
    # command; the test runner invokes `app.cli` directly, so push one here.
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args), input=input)


def cookie_name(app) -> str:
    return app.config["SESSION_COOKIE_NAME"]


class RecordingBrowser(Browser):
    """A Browser that keeps every (method, path, response) it saw."""

    def __init__(self, app, clock):
        super().__init__(app, clock)
        self.seen = []

    def get(self, path, **kwargs):
        response = super().get(path, **kwargs)
        self.seen.append(("GET", path, response))
        return response

    def post(self, path, data=None, csrf=True, **kwargs):
        response = super().post(path, data, csrf, **kwargs)
        self.seen.append(("POST", path, response))
        return response


def http(base_url, cookie=None, name="smfa_session") -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    if cookie:
        session.cookies.set(name, cookie)
    return session


def http_signed_in_as(base_url, cookie, username, name="smfa_session") -> bool:
    response = http(base_url, cookie, name).get(base_url + "/", allow_redirects=False, timeout=30)
    return response.status_code == 200 and f'id="signed-in-user">{username}<' in response.text


def device_token(browser) -> str | None:
    cookie = browser.client.get_cookie(DEVICE_COOKIE)
    return cookie.value if cookie else None


def api_request(app, method, path, token=None, *, client=None, headers=None, **kwargs):
    """One request to the API, as a script sends it: no cookies, `token` as the bearer."""
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    client = client or app.test_client(use_cookies=False)
    return client.open(path, method=method, headers=headers, **kwargs)


def totp_api(app, method, username, token=None, *, client=None, headers=None):
    """One request to the reset API (/api/v1/users/<username>/totp)."""
    path = f"/api/v1/users/{username}/totp"
    return api_request(app, method, path, token, client=client, headers=headers)
