"""The gateway through a real Caddy: the shipped deploy/Caddyfile (forward_auth to
/auth/forward, copy_headers, and the lines that strip a client's Remote-* headers) in
front of the portal and of an app that echoes what it received, on plain HTTP on
127.0.0.1 (only host names and ports swapped; the harness adds `admin off` and
`auto_https off`).

One Caddy, portal and app serve the module; the portal runs in this process on a
frozen clock, each test with new users.
"""

from __future__ import annotations

import pytest
from support.app import START
from support.proxies import (
    APP_HOSTS,
    DOMAIN,
    FORGED_IDENTITY,
    PORTAL_HOST,
    Gateway,
    Visitor,
    caddy,
    free_port,
    received,
    served_portal,
    shipped,
)

from standalone_mfa.core.clock import FrozenClock

pytestmark = pytest.mark.server

IDENTITY = ("remote-user", "remote-groups", "remote-email")
# The lines of the shipped file that keep a client's Remote-* headers from the app.
STRIP_LINES = [
    "\t\trequest_header -Remote-*\n",
    "\t\trequest_header -Remote_*\n",
    *(
        f"\t\trequest_header @smfa_no_{name.lower()} -Remote-{name}\n"
        for name in ("User", "Groups", "Email")
    ),
]


def caddyfile(portal_port: int, app_port: int, port: int, drop: list[str] = ()) -> str:
    """deploy/Caddyfile on `port` for every test site name (less the `drop` lines)."""
    sites = ", ".join(f"http://{name}.{DOMAIN}:{port}" for name in APP_HOSTS)
    return shipped(
        "Caddyfile",
        [
            ("auth.example.com {", f"http://{PORTAL_HOST}:{port} {{"),
            ("wiki.example.com {", f"{sites} {{"),
            ("127.0.0.1:8000", f"127.0.0.1:{portal_port}"),
            ("127.0.0.1:8080", f"127.0.0.1:{app_port}"),
            *((line, "") for line in drop),
        ],
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(gateway, portal port, app port, the module's folder)."""
    folder = tmp_path_factory.mktemp("gateway-caddy")
    clock = FrozenClock(START)
    port = free_port()
    with (
        served_portal(folder, clock, "http", port) as (app, portal_port, app_port),
        caddy(folder / "caddy", caddyfile(portal_port, app_port, port), [port]),
    ):
        gateway = Gateway(app, clock, "http", port)
        gateway.set_method("totp")
        yield gateway, portal_port, app_port, folder


@pytest.fixture
def gateway(servers):
    gateway = servers[0]
    gateway.clock.advance(30)  # each test on a time step of its own
    return gateway


def identity_seen(seen: dict) -> dict:
    return {name: seen[name] for name in IDENTITY if name in seen}


def test_unsigned_visitor_signs_in_with_a_code_and_lands_back_on_the_app(gateway):
    account = gateway.account("cwiki", groups=("editors",))
    address = gateway.give_address(account)
    _, landed = gateway.first_sign_in_lands_back(account, gateway.url("app1", "/page?x=1&y=%2F"))
    assert identity_seen(received(landed)) == {
        "remote-user": [account.username],
        "remote-groups": ["editors"],
        "remote-email": [address],
    }


def test_an_unsigned_post_gets_a_303_to_sign_in(gateway):
    gateway.unsigned_post_is_sent_to_sign_in("/save", 303)


def test_bypass_and_deny(gateway):
    visitor = Visitor()
    assert identity_seen(received(visitor.get(gateway.url("public", "/")))) == {}
    refused = visitor.get(gateway.url("app1", "/closed"))
    assert refused.status_code == 403 and len(visitor.history) == 1

    signed, _ = gateway.signed_in(gateway.account("cdenied"), "app2")
    refused = signed.get(gateway.url("app1", "/closed/page"))
    assert refused.status_code == 403 and len(signed.history) == 1


def test_group_rules_decide_per_user(gateway):
    gateway.group_rule_decides_per_user(
        gateway.account("cmember", groups=("staff", "ops")), "ops,staff"
    )


def test_sc32_forged_identity_headers_never_reach_the_app_through_caddy(gateway):
    forged = {**FORGED_IDENTITY, "remote-user": "root"}
    # A bypass site: the portal sends no identity, and the client's is gone too.
    seen = received(Visitor(forged).get(gateway.url("public", "/")))
    assert identity_seen(seen) == {}
    assert not any(name.startswith("remote_") for name in seen), seen  # SC-47
    # A user without groups: the portal's empty Remote-Groups, not the client's.
    account = gateway.account("chonest")
    visitor, seen = gateway.signed_in(account, "app1", **forged)
    assert seen["remote-user"] == [account.username]
    assert seen.get("remote-groups", [""]) == [""]
    assert "remote-email" not in seen  # the portal knows none
    assert not any(name.startswith("remote_") for name in seen), seen


def test_sc32_a_forged_forwarded_uri_or_host_does_not_fool_caddys_check(gateway):
    gateway.forged_forwarded_url_does_not_fool_the_check()


def test_sc32_caddy_alone_would_pass_on_a_foreign_remote_user(servers, tmp_path):
    """Why the shipped file strips the headers itself: without those lines, a bypass
    request reaches the app with a Remote-User the portal never sent (Caddy 2.6 sets
    its unfilled placeholder, later versions leave the client's)."""
    gateway, portal_port, app_port, _ = servers
    port = free_port()
    bare = caddyfile(portal_port, app_port, port, drop=STRIP_LINES)
    assert "request_header -Remote" not in bare.split("route {", 1)[1]
    with caddy(tmp_path / "bare", bare, [port]):
        url = f"http://public.{DOMAIN}:{port}/"
        seen = received(Visitor(FORGED_IDENTITY).get(url))
    assert seen.get("remote-user") not in (None, [])


def test_signing_out_ends_access_to_every_app(gateway):
    gateway.signing_out_ends_access(gateway.account("cleaving"))


def test_two_factor_rule_steps_a_password_session_up_while_mfa_is_disabled(gateway):
    gateway.set_method("disabled")
    try:
        account = gateway.account("cstepper", enrolled=True)
        visitor = Visitor()
        visitor.sign_in(visitor.get(gateway.url("app1", "/")), account, gateway.clock)
        assert visitor.steps == []
        page = gateway.url("secure", "/files?a=1")
        code_page = visitor.confirm_second_factor(visitor.get(page))
        assert code_page.url == gateway.portal + "/mfa/verify"
        landed = visitor.second_step(code_page, account, gateway.clock)
        assert landed.url == page
        assert received(landed)["remote-user"] == [account.username]
    finally:
        gateway.set_method("totp")
