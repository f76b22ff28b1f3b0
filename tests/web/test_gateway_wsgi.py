"""The gateway's checks on their lean WSGI path (`web.gateway_wsgi`): the same answers
as through Flask's full request machinery, byte for byte in status and headers, for
every kind of decision; the app's error handlers still answer a database that is down;
the proxy fix still decides the client's address; the request is still timed. And the
path is really taken: a hook only pages run does not run for a check."""

from __future__ import annotations

import peewee
import pytest
from support.app import make_app
from support.gateway import GATEWAY_RULES, PORTAL, cookie_header, signed_in_at_portal

from standalone_mfa.core.models import AuditEvent
from standalone_mfa.web.gateway_wsgi import GatewayChecks


@pytest.fixture
def app(gateway_app):
    return gateway_app


def both_paths(app, path: str, headers: dict, method: str = "GET"):
    """(status, headers, body) of one request on the lean path, then on Flask's own."""
    lean = app.wsgi_app
    assert isinstance(lean, GatewayChecks)
    answers = []
    for wsgi in (lean, lean.wsgi_app):
        app.wsgi_app = wsgi
        try:
            response = app.test_client(use_cookies=False).open(
                path, method=method, headers=headers
            )
        finally:
            app.wsgi_app = lean
        answers.append(
            (response.status, sorted(response.headers.to_wsgi_list()), response.get_data())
        )
    return answers


def nginx_headers(url, token=None, method="GET"):
    return {"X-Original-URL": url, "X-Original-Method": method, **cookie_header(url, token)}


def forward_headers(url, token=None):
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    return {
        "X-Forwarded-Proto": scheme,
        "X-Forwarded-Host": host,
        "X-Forwarded-Uri": "/" + path,
        "X-Forwarded-Method": "GET",
        **cookie_header(url, token),
    }


def test_every_decision_is_answered_as_flask_would(app, portal):
    alice = signed_in_at_portal(portal).session_token()
    bob = signed_in_at_portal(portal, "bob").session_token()
    cases = [
        ("/auth/nginx", nginx_headers("https://wiki.example.test/a", alice)),  # 200, names
        ("/auth/nginx", nginx_headers("https://public.example.test/")),  # bypass: nobody
        ("/auth/nginx", nginx_headers("https://wiki.example.test/a")),  # 401 + Location
        ("/auth/nginx", nginx_headers("https://staff.example.test/", bob)),  # 403, audited
        ("/auth/nginx", nginx_headers("https://wiki.example.test/private/x", alice)),  # 403
        ("/auth/nginx", nginx_headers("http://wiki.example.test/a", "made-up")),  # 401
        ("/auth/nginx", {"X-Original-URL": "not a url", "X-Original-Method": "GET"}),  # 403
        ("/auth/nginx", {}),  # no headers at all: 403
        ("/auth/forward", forward_headers("https://wiki.example.test/a", alice)),  # 200
        ("/auth/forward", forward_headers("https://wiki.example.test/a?q=1")),  # 302
        ("/auth/forward", forward_headers("https://vault.example.test/")),  # two_factor
    ]
    for path, headers in cases:
        lean, flask = both_paths(app, path, headers)
        assert lean == flask, (path, headers)
    lean, flask = both_paths(app, "/auth/nginx", nginx_headers(PORTAL + "/", alice), "HEAD")
    assert lean == flask and lean[2] == b""
    statuses = {both_paths(app, p, h)[0][0] for p, h in cases}
    assert statuses == {"200 OK", "401 UNAUTHORIZED", "403 FORBIDDEN", "302 FOUND"}


def test_other_paths_and_methods_go_through_flask(app):
    client = app.test_client(use_cookies=False)
    assert client.post("/auth/nginx").status_code == 405  # Flask's answer, with Allow
    assert "GET" in client.post("/auth/nginx").headers["Allow"]
    assert client.get("/auth/nginx/").status_code == 404
    assert client.get("/login").status_code == 200


def test_a_database_that_is_down_is_a_503_on_the_lean_path(app, portal, monkeypatch):
    from standalone_mfa.gateway import check

    alice = signed_in_at_portal(portal).session_token()

    def unavailable(*_args, **_kwargs):
        raise peewee.OperationalError("database is locked")

    monkeypatch.setattr(check, "identity", unavailable)
    lean, flask = both_paths(
        app, "/auth/nginx", nginx_headers("https://wiki.example.test/", alice)
    )
    assert lean[0] == "503 SERVICE UNAVAILABLE"
    assert lean[:2] == flask[:2]


def test_the_proxy_fix_still_decides_the_client_address(tmp_path, clock):
    """The lean path sits under ProxyFix, as Flask's own: a denial's audit row has the
    address the proxy vouched for, not the proxy's own."""
    app = make_app(
        tmp_path, clock, ACCESS_CONTROL=GATEWAY_RULES, GATEWAY_PORTAL_URL=PORTAL, PROXY_FIX_X_FOR=1
    )
    headers = {**nginx_headers("https://nowhere.test/"), "X-Forwarded-For": "203.0.113.9"}
    assert app.test_client().get("/auth/nginx", headers=headers).status_code == 403
    with app.app_context():
        (row,) = AuditEvent.select().where(AuditEvent.event == "gateway_denied")
    assert row.ip == "203.0.113.9"


def test_checks_are_timed_for_the_metrics(app):
    from prometheus_client import REGISTRY

    def observed():
        labels = {"endpoint": "gateway.nginx"}
        return REGISTRY.get_sample_value("smfa_request_duration_seconds_count", labels) or 0

    before = observed()
    for _ in range(3):
        app.test_client(use_cookies=False).get("/auth/nginx", headers=nginx_headers(PORTAL))
    assert observed() - before == 3


def test_the_checks_skip_what_only_pages_need(tmp_path, clock):
    """A before-request hook of the pages (here one that fails) does not run for a
    check, which is what makes the path lean; a page still runs it."""
    app = make_app(tmp_path, clock, ACCESS_CONTROL=GATEWAY_RULES, GATEWAY_PORTAL_URL=PORTAL)

    @app.before_request
    def pages_only():
        raise RuntimeError("a page hook ran")

    client = app.test_client(use_cookies=False)
    assert (
        client.get("/auth/nginx", headers=nginx_headers("https://wiki.example.test/")).status_code
        == 401
    )
    assert client.get("/login").status_code == 500
