"""Against a real multi-threaded HTTP server on a file database: the replay race
(SC-06), and the set-up QR code read back by a real decoder and confirmed with a code
from an independent TOTP implementation (oathtool). Plus the otpauth URI (SC-23).

The clock is a FrozenClock shared by the server's threads: nobody moves it while
requests are in flight, so a round can never straddle a time-step boundary.
"""

from __future__ import annotations

import base64
import functools
import html
import re
import xml.etree.ElementTree as ET
from urllib.parse import unquote, urlsplit

import pyotp
import pytest
import requests
from PIL import Image, ImageDraw
from pyzbar import pyzbar
from support.app import PASSWORD, database_url, make_app
from support.client import together
from support.oath import oathtool_codes
from support.servers import quiet_server

from standalone_mfa import create_app
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.core.db import db
from standalone_mfa.core.models import AuditEvent, TotpCredential
from standalone_mfa.directory import settings
from standalone_mfa.directory.users import UserError, create_user, find_user
from standalone_mfa.factors import totp

pytestmark = pytest.mark.server

HTTP_TIMEOUT = 30  # seconds; generous, a stuck request fails the test instead of hanging
CSRF_INPUT_RE = re.compile(r'<input\b[^>]*\bname="csrf_token"[^>]*>')
VALUE_RE = re.compile(r'\bvalue="([^"]*)"')
SECRET_RE = re.compile(r'id="totp-secret"[^>]*>([^<]+)<')
QR_SVG_RE = re.compile(r'id="totp-qr"[^>]*>\s*(<svg\b.*?</svg>)', re.S)


@pytest.fixture
def live_app(request, tmp_path, clock):
    """The app on a file database (config overrides through indirect parametrisation)."""
    app = make_app(tmp_path, clock, **getattr(request, "param", {}))
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    yield app
    with app.app_context():
        db.close()


@pytest.fixture
def server_url(live_app):
    """Serve `live_app` with werkzeug's threaded server on a free port; the base URL."""
    with quiet_server(live_app) as url:
        yield url


class Visitor:
    """One browser (one cookie jar) talking HTTP to the live server."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.http.trust_env = False  # never send 127.0.0.1 through a proxy from the env
        self.token: str | None = None

    def get(self, path: str) -> requests.Response:
        response = self.http.get(self.base_url + path, allow_redirects=False, timeout=HTTP_TIMEOUT)
        field = CSRF_INPUT_RE.search(response.text)
        if field:
            value = VALUE_RE.search(field.group(0))
            assert value, f"CSRF input without a value: {field.group(0)}"
            self.token = html.unescape(value.group(1))
        return response

    def post(self, path: str, data: dict) -> requests.Response:
        assert self.token, "GET a page with a form first"
        return self.http.post(
            self.base_url + path,
            data={"csrf_token": self.token, **data},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )

    def login(self, username: str) -> requests.Response:
        form = self.get("/login")
        assert form.status_code == 200, f"GET /login: {describe(form)}"
        return self.post("/login", {"username": username, "password": PASSWORD})


def describe(response: requests.Response) -> str:
    """Status, Location and the page's message, for assertion messages."""
    main = re.search(r"<main\b.*?</main>", response.text, re.S)
    text = re.sub(r"<[^>]+>|\s+", " ", main.group(0) if main else response.text)
    text = " ".join(text.split())[:300]
    return f"{response.status_code} {response.headers.get('Location')} {text}"


def _run_together(count: int, action) -> list:
    """action(i) for i in range(count), on threads released at once; the results in order."""
    return together(*(functools.partial(action, i) for i in range(count)), timeout=HTTP_TIMEOUT)


# --- SC-06: the replay race -------------------------------------------------------

ROUNDS = 20
CONTENDERS = 20


def _user_with_credential(app, clock, username: str) -> tuple[str, int]:
    """A new user with a confirmed credential last used one step before now; returns
    the secret and the current (never used) step."""
    with app.app_context():
        user = create_user(username, PASSWORD)
        secret = totp.new_secret()
        step = int(clock.timestamp()) // totp.PERIOD
        assert totp.enrol(user, secret, step - 1) is not None
    return secret, step


def test_sc06_same_code_on_20_pending_logins_signs_in_exactly_one(live_app, server_url, clock):
    for round_no in range(ROUNDS):
        clock.advance(totp.PERIOD)  # between rounds only: no request is in flight
        username = f"racer{round_no}"  # a fresh account: its own throttle and replay state
        secret, step = _user_with_credential(live_app, clock, username)
        visitors = [Visitor(server_url) for _ in range(CONTENDERS)]

        # The password steps five at a time: on PostgreSQL, ten at once for one username
        # are ten failures in flight for the password throttle (each attempt is
        # counted before it is checked) and meet its back-off. The race under test is
        # the code's, below.
        logins = []
        for first in range(0, CONTENDERS, 5):
            logins += _run_together(
                5, lambda i, f=first, v=visitors, u=username: v[f + i].login(u)
            )
        bad = [describe(r) for r in logins if r.headers.get("Location") != "/mfa/verify"]
        assert not bad, f"round {round_no}: {len(bad)} password steps failed, first: {bad[0]}"
        for visitor in visitors:  # the code form's own CSRF token, as a browser would
            form = visitor.get("/mfa/verify")
            assert form.status_code == 200, f"round {round_no}: {describe(form)}"

        code = pyotp.TOTP(secret).at(clock.timestamp())
        answers = _run_together(
            CONTENDERS, lambda i, v=visitors, c=code: v[i].post("/mfa/verify", {"code": c})
        )

        bad = [describe(r) for r in answers if r.status_code != 302]
        assert not bad, f"round {round_no}: {len(bad)} code posts not redirected: {bad[0]}"
        winners = [i for i, r in enumerate(answers) if r.headers["Location"] == "/"]
        assert len(winners) == 1, (
            f"round {round_no}: {len(winners)} of {CONTENDERS} logins accepted one code"
        )
        homes = [visitor.get("/") for visitor in visitors]
        signed_in = [
            i for i, r in enumerate(homes) if r.status_code == 200 and "signed in as" in r.text
        ]
        assert signed_in == winners, f"round {round_no}: signed in {signed_in}, won {winners}"
        assert f'id="signed-in-user">{username}<' in homes[winners[0]].text
        for i, home in enumerate(homes):
            if i not in winners:
                assert home.status_code == 302, f"round {round_no}: {describe(home)}"
                assert home.headers["Location"] in ("/mfa/verify", "/login")

        with live_app.app_context():
            credential = TotpCredential.get(TotpCredential.user == find_user(username))
            assert credential.last_used_step == step
            replays = AuditEvent.select().where(
                (AuditEvent.event == "totp_replay") & (AuditEvent.username == username)
            )
            assert replays.count() >= 1, f"round {round_no}: no totp_replay audit event"
            assert (
                AuditEvent.select()
                .where(
                    (AuditEvent.event == "totp")
                    & (AuditEvent.outcome == "ok")
                    & (AuditEvent.username == username)
                )
                .count()
                == 1
            )


# --- The set-up QR code, decoded; the first code from oathtool ----------------------

SUBPATH_RE = re.compile(r"M(\d+),(\d+)H(\d+)V(\d+)H(\d+)z")
PIXELS_PER_MODULE = 8


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def rasterise_qr_svg(svg: str) -> Image.Image:
    """Draw qrcode's SvgPathFillImage output: a white rect and one path of unit
    squares `Mx,yHx2Vy2Hxz`, in a viewBox measured in modules (quiet zone included)."""
    root = ET.fromstring(svg)  # noqa: S314 -- our own test server's page
    assert _local(root.tag) == "svg"
    min_x, min_y, width, height = (float(v) for v in root.attrib["viewBox"].split())
    assert (min_x, min_y) == (0, 0) and width == height and width.is_integer()
    size = int(width)
    rects = [e for e in root.iter() if _local(e.tag) == "rect"]
    assert rects and rects[0].get("fill") in ("white", "#fff", "#ffffff")
    paths = [e for e in root.iter() if _local(e.tag) == "path"]
    assert len(paths) == 1, f"expected one path, got {len(paths)}"
    assert paths[0].get("fill") in (None, "black", "#000", "#000000")
    d = paths[0].attrib["d"]
    squares = SUBPATH_RE.findall(d)
    leftover = SUBPATH_RE.sub("", d)
    assert squares and not leftover, f"unexpected path data: {leftover[:80]!r}"

    image = Image.new("L", (size * PIXELS_PER_MODULE, size * PIXELS_PER_MODULE), 255)
    draw = ImageDraw.Draw(image)
    for x, y, x2, y2, x3 in ((int(v) for v in square) for square in squares):
        assert x3 == x and max(x, x2) <= size and max(y, y2) <= size
        left, right = sorted((x, x2))
        top, bottom = sorted((y, y2))
        draw.rectangle(
            (
                left * PIXELS_PER_MODULE,
                top * PIXELS_PER_MODULE,
                right * PIXELS_PER_MODULE - 1,
                bottom * PIXELS_PER_MODULE - 1,
            ),
            fill=0,
        )
    # The quiet zone (4 modules on each side) stays white: nothing is drawn in it.
    quiet, full = 4 * PIXELS_PER_MODULE, image.width
    sides = [
        (0, 0, full, quiet),
        (0, full - quiet, full, full),
        (0, 0, quiet, full),
        (full - quiet, 0, full, full),
    ]
    for box in sides:
        assert image.crop(box).getextrema() == (255, 255), f"dark modules in quiet zone {box}"
    return image


@pytest.mark.parametrize("live_app", [{"MFA_TOTP_WINDOW": 0}], indirect=True)
def test_setup_qr_decodes_and_oathtool_code_completes_setup(live_app, server_url, clock):
    """Window 0: the server must accept oathtool's code for exactly the current step."""
    clock.advance(17)  # mid-step, 12:00:17 UTC
    visitor = Visitor(server_url)
    response = visitor.login("alice")
    assert (response.status_code, response.headers.get("Location")) == (302, "/mfa/setup")
    page = visitor.get("/mfa/setup")
    assert page.status_code == 200

    secret_match = SECRET_RE.search(page.text)
    assert secret_match, "no secret on the set-up page"
    secret = html.unescape(secret_match.group(1)).replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret

    svg_match = QR_SVG_RE.search(page.text)
    assert svg_match, 'no inline <svg> inside id="totp-qr"'
    image = rasterise_qr_svg(svg_match.group(1))
    symbols = pyzbar.decode(image, symbols=[pyzbar.ZBarSymbol.QRCODE])
    assert len(symbols) == 1, f"decoded {len(symbols)} QR codes"
    assert symbols[0].data.decode("utf-8") == (
        f"otpauth://totp/Standalone%20MFA:alice?secret={secret}&issuer=Standalone%20MFA"
    )

    code = oathtool_codes(secret, int(clock.timestamp()) // 30)[0]

    response = visitor.post("/mfa/setup", {"code": code})
    assert (response.status_code, response.headers.get("Location")) == (302, "/mfa/recovery-codes")
    codes_page = visitor.get("/mfa/recovery-codes")
    assert codes_page.text.count("<li><code>") == 10
    response = visitor.post("/mfa/recovery-codes", {})
    assert (response.status_code, response.headers.get("Location")) == (302, "/")
    home = visitor.get("/")
    assert home.status_code == 200
    assert 'id="signed-in-user">alice<' in home.text
    with live_app.app_context():
        credential = TotpCredential.get()
        assert credential.user.username == "alice"
        assert credential.last_used_step == int(clock.timestamp()) // 30


# --- SC-23: the otpauth URI ----------------------------------------------------------

ACCOUNT_CHARS_RE = re.compile(r"(?:[A-Za-z0-9._~@+-]|%[0-9A-F]{2})+")
ALLOWED_PARAMS = {
    "secret": None,
    "issuer": None,
    "algorithm": "SHA1",
    "digits": "6",
    "period": "30",
}


def _query_pairs(query: str) -> dict[str, str]:
    pairs = [pair.split("=", 1) for pair in query.split("&")]
    assert all(len(p) == 2 for p in pairs), query
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"repeated parameter in {query}"
    return dict(pairs)


@pytest.mark.parametrize(
    ("issuer", "encoded_issuer"),
    [
        ("Standalone MFA", "Standalone%20MFA"),
        ("ACME & Co. Ltd", "ACME%20%26%20Co.%20Ltd"),
        ("R/D Portal", "R%2FD%20Portal"),
    ],
)
def test_sc23_provisioning_uri_form(tmp_path, clock, issuer, encoded_issuer):
    app = make_app(tmp_path, clock, MFA_ISSUER=issuer)
    try:
        with app.app_context():
            user = create_user("Ann@Example.org", PASSWORD)
            secret = totp.new_secret()
        with app.test_request_context():
            uri = totp.provisioning_uri(secret, user.username)
    finally:
        with app.app_context():
            db.close()

    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp"), uri
    assert not parts.fragment
    label = parts.path.removeprefix("/")
    assert "/" not in label, f"the label must be one path segment: {uri}"
    assert label.count(":") == 1, f"exactly one colon, between issuer and account: {uri}"
    label_issuer, account = label.split(":")
    assert label_issuer == encoded_issuer, uri
    assert unquote(label_issuer) == issuer
    assert ACCOUNT_CHARS_RE.fullmatch(account), f"account not percent-encoded: {account}"
    assert unquote(account) == "ann@example.org"

    params = _query_pairs(parts.query)
    assert {"secret", "issuer"} <= params.keys() <= ALLOWED_PARAMS.keys(), params
    assert params["issuer"] == label_issuer, "issuer parameter differs from the label prefix"
    for name in ("algorithm", "digits", "period"):
        if name in params:
            assert params[name] == ALLOWED_PARAMS[name], f"{name}={params[name]}"

    assert params["secret"] == secret
    assert "=" not in secret and re.fullmatch(r"[A-Z2-7]+", secret), secret
    assert len(base64.b32decode(secret)) * 8 >= 160
    # What the URI leaves out is what the server uses: SHA1, 6 digits, 30 s.
    assert (totp.ALGORITHM, totp.DIGITS, totp.PERIOD) == ("SHA1", 6, 30)


@pytest.mark.parametrize("issuer", ["ACME:Corp", "Standalone MFA:", ":"])
def test_sc23_create_app_refuses_issuer_with_colon(tmp_path, clock, issuer):
    config = {
        "TESTING": True,
        "DATABASE_URL": database_url(tmp_path),
        "CLOCK": clock,
        "MFA_ISSUER": issuer,
    }
    with pytest.raises(ConfigurationError, match="colon"):
        create_app(config)


def test_sc23_username_with_colon_refused(app):
    with app.app_context(), pytest.raises(UserError):
        create_user("ann:admin", PASSWORD)
