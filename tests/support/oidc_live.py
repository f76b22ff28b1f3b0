"""The portal as a live OpenID provider for the interop tests: the real portal under
gunicorn (`oidc_portal`), people with an authenticator whose codes come from pyotp at
the real time (`OidcPerson`), registered clients (`OidcPortal.register`), the person's
browser from the client's /authorize link to its redirect URI (`browser_hop`), and the
raw protocol steps the Basic OP checks repeat (`authorization_url`, `token_post`,
`id_token_claims`).

The portal's public URL (its issuer) is http://localhost:PORT, PORT bound by the test
before gunicorn starts: a relying party checks the issuer against the URL it read the
discovery document from, and the portal's passkey settings refuse an IP address."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

import pyotp
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from standalone_mfa import create_app
from standalone_mfa.core.db import db
from standalone_mfa.directory import settings as mfa_settings
from standalone_mfa.factors import totp
from standalone_mfa.oidc import clients
from support.app import PASSWORD, database_url, fresh_schema
from support.pages import VALUE_RE
from support.paths import ROOT
from support.proxies import ACTION_RE, FORM_RE, INPUT_RE, NAME_RE, new_account
from support.servers import HTTP_TIMEOUT, clean_env, gunicorn, instance_target, write_instance

# What every relying party here asks for (groups: the portal's own scope).
SCOPE = "openid profile email groups"


# ------------------------------------------------------------------ people


@dataclass
class OidcPerson:
    """A user of the portal with the authenticator app on their phone. Each sign-in
    uses a time step after the last one used (the portal refuses a step twice): now,
    then the next one (within the window of ±1), then it waits for the clock."""

    username: str
    secret: str
    groups: tuple[str, ...] = ()
    last_step: int = 0

    def code(self) -> str:
        while True:
            now = int(time.time()) // totp.PERIOD
            step = max(self.last_step + 1, now)
            if step <= now + 1:
                self.last_step = step
                return pyotp.TOTP(self.secret).at(step * totp.PERIOD)
            time.sleep(totp.PERIOD - time.time() % totp.PERIOD + 0.05)  # the next step


@dataclass
class RegisteredClient:
    """A client as an administrator registered it: its id, its secret (None: a public
    client) and its first redirect URI."""

    name: str
    client_id: str
    secret: str | None
    redirect_uri: str


# ------------------------------------------------------------------ the portal


@dataclass
class OidcPortal:
    """The portal under gunicorn (`url`, its issuer) and an app in this process on the
    same database and keys, for what an administrator does outside the browser."""

    app: object
    url: str
    log: Path
    instance: Path

    def person(self, prefix: str = "user", groups=()) -> OidcPerson:
        """A new user (a fresh name) in `groups`, with an authenticator set up two
        steps ago, and nothing else used."""
        enrolled = int(time.time()) // totp.PERIOD - 2
        account = new_account(self.app, prefix, tuple(groups), enrolled_at_step=enrolled)
        return OidcPerson(account.username, account.secret, tuple(groups), enrolled)

    def register(self, name: str, redirect_uris, **options) -> RegisteredClient:
        """`clients.add` as the administrator does (`options`: public, policy,
        subjects, offline, post_logout_redirect_uris)."""
        uris = [redirect_uris] if isinstance(redirect_uris, str) else list(redirect_uris)
        with self.app.app_context():
            row, secret = clients.add(name, uris, actor="test", **options)
            return RegisteredClient(row.name, row.client_id, secret, uris[0])

    def register_with_cli(self, name: str, *options: str) -> RegisteredClient:
        """`standalone-mfa oidc client add NAME OPTIONS…`, as an administrator types it
        on the server (the instance folder by STANDALONE_MFA_INSTANCE); the client_id
        and client_secret read from its last two lines."""
        # The console script's `main`, run from the checkout (the venv's own script
        # may belong to another one).
        command = [sys.executable, "-c", "from standalone_mfa.cli import main; main()"]
        result = subprocess.run(  # noqa: S603 -- our own venv's python
            [*command, "oidc", "client", "add", name, *options],
            cwd=ROOT,
            env=clean_env() | {"STANDALONE_MFA_INSTANCE": str(self.instance)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        id_line, secret_line = result.stdout.rstrip("\n").split("\n")[-2:]
        assert id_line.startswith("client_id: "), result.stdout
        assert secret_line.startswith("client_secret: "), result.stdout
        redirect_uri = options[list(options).index("--redirect-uri") + 1]
        return RegisteredClient(
            name,
            id_line.removeprefix("client_id: "),
            secret_line.removeprefix("client_secret: "),
            redirect_uri,
        )

    def discovery(self) -> dict:
        response = requests.get(
            self.url + "/.well-known/openid-configuration", timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 200, (response.status_code, response.text[:300])
        return response.json()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def oidc_portal(folder: Path, settings: dict | None = None, workers: int = 2):
    """The portal under gunicorn on a new instance folder (its database: the run's
    PostgreSQL when TEST_DATABASE_URL is set, else a SQLite file there, after the
    real upgrade), TOTP on, its public URL http://localhost:PORT; yields an
    `OidcPortal`. Stopped by pid on the way out, whatever happened."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        url = f"http://localhost:{port}"
        instance = write_instance(
            folder / "instance",
            {
                "DATABASE_URL": database_url(folder),
                "GATEWAY_PORTAL_URL": url,
                "WEBAUTHN_RP_ID": "localhost",
                **(settings or {}),
            },
        )
        app = create_app(instance_path=str(instance))
        with app.app_context():
            fresh_schema()
            mfa_settings.set_mfa_method("totp", actor="test")
        log = folder / "gunicorn.log"
        listener.set_inheritable(True)
        try:
            with gunicorn(instance_target(instance), log, clean_env(), workers, 4, listener):
                yield OidcPortal(app, url, log, instance)
        finally:
            with app.app_context():
                db.close()


# ------------------------------------------------------------------ the browser


class HopError(AssertionError):
    """The browser stopped somewhere it could not go on from (an error page, an
    unexpected redirect); carries the last response."""

    def __init__(self, message: str, response: requests.Response):
        page = response.text[:800]
        super().__init__(f"{message}: {response.status_code} {response.url}\n{page}")
        self.response = response


def fresh_browser() -> requests.Session:
    """A browser with its own cookie jar, that never goes through a proxy of the env."""
    http = requests.Session()
    http.trust_env = False
    return http


def browser_hop(
    http: requests.Session,
    authorize_url: str,
    person: OidcPerson | None,
    redirect_uri: str,
    seen: list[str] | None = None,
) -> str:
    """The person's browser from the client's authorization URL, redirect by redirect,
    through whatever the portal asks (the password form with its CSRF token, the code
    page, the "continue" button of a second factor), until the portal redirects to
    `redirect_uri`: returns that URL (with `code` and `state`, or `error`), without
    following it. `seen` collects the path of each page where it filled a form.
    Raises HopError where it cannot go on (a page without a step; `person` None and
    a sign-in asked)."""
    response = http.get(authorize_url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    for _ in range(30):
        if response.is_redirect:
            target = urljoin(response.url, response.headers["Location"])
            if target.split("?", 1)[0].split("#", 1)[0] == redirect_uri:
                return target
            response = http.get(target, allow_redirects=False, timeout=HTTP_TIMEOUT)
            continue
        if response.status_code != 200:
            raise HopError("the portal answered", response)
        response = _fill_the_step(http, response, person, seen)
    raise HopError("more than 30 steps", response)


def _fill_the_step(http, page, person, seen) -> requests.Response:
    main = page.text[max(page.text.find("<main"), 0) :]  # not the header's sign-out
    for form in FORM_RE.finditer(main):
        fields = {}
        for tag in INPUT_RE.findall(form.group("body")):
            name, value = NAME_RE.search(tag), VALUE_RE.search(tag)
            if name:
                fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
        asks = {"username", "password", "code"} & fields.keys()
        button = 'id="second-factor-continue"' in form.group("body")
        if not asks and not button:
            continue
        if asks and person is None:
            raise HopError("a sign-in was asked of nobody", page)
        fields.pop("remember_device", None)
        if "username" in fields:
            fields["username"] = person.username
        if "password" in fields:
            fields["password"] = PASSWORD
        if "code" in fields:
            fields["code"] = person.code()
        if seen is not None:
            seen.append(urlsplit(page.url).path)
        action = ACTION_RE.search(form.group("tag"))
        url = urljoin(page.url, html.unescape(action.group(1))) if action else page.url
        response = http.post(url, data=fields, allow_redirects=False, timeout=HTTP_TIMEOUT)
        if response.status_code == 200 and urlsplit(response.url).path == urlsplit(url).path:
            raise HopError("the form was refused", response)
        return response
    raise HopError("no sign-in step on the page", page)


# ------------------------------------------------------------------ the protocol, raw


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, its S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Authorization:
    """An authorization request as a relying party makes it, and what it must
    remember to finish it."""

    url: str
    state: str
    nonce: str | None
    verifier: str | None


def authorization_url(portal: OidcPortal, client: RegisteredClient, **params) -> Authorization:
    """The /authorize URL of a code flow with S256 PKCE, a state and a nonce (each
    overridden by `params`; a None value leaves the parameter out)."""
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    query = {k: v for k, v in query.items() if v is not None}
    endpoint = portal.discovery()["authorization_endpoint"]
    return Authorization(
        f"{endpoint}?{urlencode(query)}",
        query.get("state"),
        query.get("nonce"),
        verifier if query.get("code_challenge") == challenge else None,
    )


def token_post(
    portal: OidcPortal, client: RegisteredClient, data: dict, auth: str = "basic"
) -> requests.Response:
    """A POST to the token endpoint, the client authenticated by `auth`: "basic"
    (client_secret_basic), "post" (client_secret_post) or "none" (client_id only)."""
    data = dict(data)
    kwargs = {}
    if auth == "basic":
        kwargs["auth"] = (client.client_id, client.secret)
    elif auth == "post":
        data |= {"client_id": client.client_id, "client_secret": client.secret}
    else:
        data["client_id"] = client.client_id
    endpoint = portal.discovery()["token_endpoint"]
    return requests.post(endpoint, data=data, timeout=HTTP_TIMEOUT, **kwargs)


def jwks(portal: OidcPortal) -> KeySet:
    response = requests.get(portal.discovery()["jwks_uri"], timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text[:300]
    return KeySet.import_key_set(response.json())


def id_token_claims(portal: OidcPortal, id_token: str) -> tuple[dict, dict]:
    """(the JWS header, the claims) of an ID token whose signature checks with the
    portal's JWKS, by the key its `kid` names (joserfc: not the portal's code)."""
    keys = jwks(portal)
    token = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
    return dict(token.header), dict(token.claims)
