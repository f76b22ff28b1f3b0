"""web/sessionless: one rule says which requests have no session, for the session
interface (before routing) and the guard (after): the API, the health check, the
gateway's checks, the metrics and static files, and nothing else."""

from __future__ import annotations

import pytest
from support.app import START, make_app
from support.client import Browser

from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.web.sessionless import SESSIONLESS_BLUEPRINTS, is_sessionless

TOKEN = "m" * 32


@pytest.fixture
def full_app(tmp_path):
    """Every blueprint registered (the metrics one only exists with its token)."""
    return make_app(
        tmp_path,
        FrozenClock(START),
        METRICS_TOKEN=TOKEN,
        ACCESS_CONTROL={"default_policy": "deny"},
        GATEWAY_PORTAL_URL="https://auth.example.com",
    )


def example_path(rule) -> str:
    return rule.rule.replace("<username>", "alice").replace("<path:filename>", "style.css")


def test_every_route_of_a_sessionless_blueprint_and_no_other_is_sessionless(full_app):
    seen = set()
    with full_app.test_request_context():
        for rule in full_app.url_map.iter_rules():
            blueprint = rule.endpoint.rpartition(".")[0]
            expected = blueprint in SESSIONLESS_BLUEPRINTS or rule.endpoint == "static"
            assert is_sessionless(example_path(rule)) is expected, rule.rule
            seen.add(blueprint or rule.endpoint)
    assert SESSIONLESS_BLUEPRINTS | {"static", "auth", "mfa", "account", "admin"} <= seen


@pytest.mark.parametrize(
    "path, sessionless",
    [
        ("/api/v1/no/such/route", True),  # the whole prefix, routed or not
        ("/api/v1", True),
        ("/apix", False),
        ("/auth/nginx", True),
        ("/auth/forwardx", True),  # under the gateway's prefix
        ("/authx", False),
        ("/healthz", True),
        ("/healthz/x", False),
        ("/metrics", True),
        ("/static/app.css", True),
        ("/login", False),
        ("/", False),
    ],
)
def test_paths(full_app, path, sessionless):
    with full_app.test_request_context():
        assert is_sessionless(path) is sessionless


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/users", "/auth/nginx"])
def test_a_sessionless_request_sets_no_cookie_even_for_a_signed_in_browser(full_app, path):
    browser = Browser(full_app, FrozenClock(START))
    assert browser.login("alice").headers["Location"] == "/"  # the method is Disabled
    response = browser.get(path)
    assert "Set-Cookie" not in response.headers, path
