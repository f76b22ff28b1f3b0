"""The gateway through a real nginx: the shipped deploy/nginx-app.conf and its snippets
(auth_request to /auth/nginx) in front of an app that echoes what it received, and
deploy/nginx.conf in front of the portal, both over TLS with a throwaway certificate
for *.example.test, on one port of 127.0.0.1 (only ports, names and paths swapped).

One nginx, portal and app serve the whole module; the portal runs in this process on a
frozen clock, each test with new users (no used code step or throttle inherited).
"""

from __future__ import annotations

import pytest
import requests
from support.app import START
from support.proxies import (
    APP_HOSTS,
    DOMAIN,
    FORGED_IDENTITY,
    FORGED_URL,
    Gateway,
    Visitor,
    add_to_group,
    echo_upstream,
    free_port,
    nginx,
    nginx_app_site,
    nginx_gateway,
    nginx_snippets,
    rd_of,
    received,
    served_portal,
)

from standalone_mfa.core.clock import FrozenClock

pytestmark = [
    pytest.mark.server,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]

IDENTITY = ("remote-user", "remote-groups", "remote-email")
GATEWAY_HEADERS = ("x-original-url", "x-original-method", "x-forwarded-uri", "x-forwarded-method")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway-nginx")
    clock = FrozenClock(START)
    https_port = free_port()
    with (
        served_portal(folder, clock, "https", https_port) as (app, portal_port, app_port),
        nginx_gateway(folder, https_port, portal_port, portal_port, app_port),
    ):
        gateway = Gateway(app, clock, "https", https_port)
        gateway.portal_port = portal_port
        gateway.set_method("totp")
        yield gateway


@pytest.fixture
def next_step(gateway):
    """Each test starts on a time step of its own."""
    gateway.clock.advance(30)


def identity_seen(seen: dict) -> dict:
    return {name: seen[name] for name in IDENTITY if name in seen}


def test_unsigned_visitor_signs_in_with_a_code_and_lands_back_on_the_app(gateway, next_step):
    account = gateway.account("wiki", groups=("wiki", "staff"))
    address = gateway.give_address(account)
    page = gateway.url("app1", "/page/2?sort=new&q=a%20b")
    # nginx's error_page 401 =302 sends the browser to sign in; SC-36: the cookie.
    _, landed = gateway.first_sign_in_lands_back(account, page)
    assert identity_seen(received(landed)) == {
        "remote-user": [account.username],
        "remote-groups": ["staff,wiki"],
        "remote-email": [address],
    }
    assert landed.json()["path"] == "/page/2?sort=new&q=a%20b"


def test_a_second_sign_in_asks_for_the_code_only(gateway, next_step):
    account = gateway.account("again", enrolled=True)
    visitor = Visitor()
    landed = visitor.sign_in(visitor.get(gateway.url("app2", "/x")), account, gateway.clock)
    assert visitor.steps == ["/mfa/verify"]
    # No groups: the portal's empty Remote-Groups is an empty variable, sent as none.
    assert identity_seen(received(landed)) == {"remote-user": [account.username]}


def test_an_unsigned_post_is_sent_to_sign_in(gateway):
    gateway.unsigned_post_is_sent_to_sign_in("/form", 302)


def test_bypass_needs_no_sign_in_and_carries_no_identity(gateway):
    response = Visitor().get(gateway.url("public", "/news"))
    seen = received(response)
    assert identity_seen(seen) == {}


def test_deny_is_a_403_not_a_redirect(gateway, next_step):
    anonymous = Visitor().get(gateway.url("app1", "/closed/x"))
    assert anonymous.status_code == 403 and "Location" not in anonymous.headers

    visitor, _ = gateway.signed_in(gateway.account("denied"))
    refused = visitor.get(gateway.url("app1", "/closed"))
    assert refused.status_code == 403 and len(visitor.history) == 1
    assert visitor.get(gateway.url("app1", "/open")).status_code == 200


def test_group_rules_decide_per_user(gateway, next_step):
    member = gateway.account("member", groups=("staff",))
    visitor = Visitor()
    landed = visitor.sign_in(visitor.get(gateway.url("staff", "/")), member, gateway.clock)
    assert identity_seen(received(landed))["remote-groups"] == ["staff"]

    gateway.clock.advance(30)
    outsider = gateway.account("outsider")
    other = Visitor()
    refused = other.sign_in(other.get(gateway.url("staff", "/")), outsider, gateway.clock)
    assert refused.status_code == 403  # signed in, and refused: no loop back to sign in
    assert refused.url == gateway.url("staff", "/")

    # Added to the group, the same session passes at its next request.
    add_to_group(gateway.app, outsider, "staff")
    assert identity_seen(received(other.get(gateway.url("staff", "/"))))["remote-groups"] == [
        "staff"
    ]


def test_sc32_forged_identity_headers_never_reach_the_app_through_nginx(gateway, next_step):
    variants = {
        **FORGED_IDENTITY,
        "remote-user": "root",
        "REMOTE-GROUPS": "admins",
        "Remote_User": "root",  # nginx drops names with underscores (a WSGI server
        "Remote_Groups": "admins",  # would read them as REMOTE_USER)
    }
    # Anonymous, on a bypass site: the app is reached, with no identity at all.
    seen = received(Visitor(variants).get(gateway.url("public", "/")))
    assert not any(name.replace("_", "-") in IDENTITY for name in seen)
    # Anonymous on a protected site: the forged names sign nobody in.
    visitor = Visitor(variants)
    assert visitor.get(gateway.url("app1", "/")).url.startswith(gateway.portal + "/login")
    # Signed in: exactly the portal's answer, once.
    account = gateway.account("honest")
    landed = visitor.sign_in(visitor.history[-1], account, gateway.clock)
    seen = received(landed)
    assert identity_seen(seen) == {"remote-user": [account.username]}
    assert not any("_" in name for name in seen)


def test_sc32_a_forged_original_url_neither_reaches_nor_fools_the_check(gateway, next_step):
    # The client claims to ask for the public site: nginx's own X-Original-URL wins.
    visitor = Visitor(FORGED_URL)
    page = gateway.url("app1", "/secret")
    first = visitor.get(page, follow=False)
    assert first.status_code == 302 and rd_of(first.headers["Location"]) == page
    # Signed in, a denied path stays denied whatever the client says it asks for.
    signed, _ = gateway.signed_in(gateway.account("liar"), **FORGED_URL)
    assert signed.get(gateway.url("app1", "/closed")).status_code == 403
    # And the app behind sees none of those headers as the client wrote them.
    seen = received(signed.get(gateway.url("app1", "/open")))
    assert not any(name in seen for name in GATEWAY_HEADERS)
    assert "x-forwarded-prefix" not in seen
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == [f"app1.{DOMAIN}"]


def test_sc32_an_unknown_host_name_is_not_answered(gateway):
    """A request whose Host names no server (with the TLS name of a protected one) meets
    the shipped catch-all, which closes it: no app is reached under a name of the
    client's choosing."""
    visitor = Visitor()
    with pytest.raises(requests.ConnectionError):
        visitor.get(gateway.url("app1", "/"), headers={"Host": f"other.{DOMAIN}"})


def test_signing_out_ends_access_to_every_app(gateway, next_step):
    gateway.signing_out_ends_access(gateway.account("leaving"), ("app1", "app2", "staff"))


@pytest.fixture
def mfa_disabled(gateway):
    gateway.set_method("disabled")
    try:
        yield
    finally:
        gateway.set_method("totp")


def test_two_factor_rule_steps_a_password_session_up_while_mfa_is_disabled(
    gateway, next_step, mfa_disabled
):
    account = gateway.account("stepper")
    visitor = Visitor()
    landed = visitor.sign_in(visitor.get(gateway.url("app1", "/")), account, gateway.clock)
    assert visitor.steps == []  # the site asks for the password only
    assert identity_seen(received(landed))["remote-user"] == [account.username]

    # The two_factor site: through the set-up (no authenticator yet), then straight back.
    page = gateway.url("secure", "/vault?id=7")
    setup = visitor.confirm_second_factor(visitor.get(page))
    assert setup.url == gateway.portal + "/mfa/setup"
    landed = visitor.second_step(setup, account, gateway.clock)
    assert visitor.steps == ["/mfa/setup"]
    assert landed.url == page
    assert identity_seen(received(landed))["remote-user"] == [account.username]


def test_two_factor_rule_asks_an_enrolled_user_for_the_code(gateway, next_step, mfa_disabled):
    account = gateway.account("enrolled", enrolled=True)
    visitor = Visitor()
    visitor.sign_in(visitor.get(gateway.url("app2", "/")), account, gateway.clock)
    assert visitor.steps == []
    page = gateway.url("secure", "/")
    code_page = visitor.confirm_second_factor(visitor.get(page))
    assert code_page.url == gateway.portal + "/mfa/verify"
    landed = visitor.second_step(code_page, account, gateway.clock)
    assert landed.url == page and received(landed)["remote-user"] == [account.username]
    # Other apps keep working with the stepped-up session.
    assert visitor.get(gateway.url("app1", "/")).status_code == 200


def test_sc47_underscore_spellings_are_dropped_even_with_underscores_in_headers_on(
    gateway, tmp_path, next_step
):
    """nginx ignores header names with `_` by default; an administrator who turned
    `underscores_in_headers on` for another app must not open the door to
    `Remote_User`, which a WSGI, CGI or FastCGI server reads as Remote-User."""
    https_port = free_port()
    portal_port = int(gateway.portal_port)
    with echo_upstream() as app_port:
        snippets = nginx_snippets(tmp_path / "snippets")
        names = " ".join(f"{name}.{DOMAIN}" for name in APP_HOSTS)
        site = nginx_app_site(portal_port, app_port, https_port, names, snippets)
        site = "underscores_in_headers on;\n" + site
        with nginx(tmp_path / "nginx", {"apps.conf": site}, [https_port]):
            forged = [
                ("Remote_User", "root"),
                ("REMOTE_USER", "root"),
                ("remote_groups", "admins"),
                ("Remote_Email", "root@example.test"),
            ]
            visitor = Visitor()
            url = f"https://public.{DOMAIN}:{https_port}/"
            seen = received(visitor.get(url, headers=dict(forged)))
            assert not any(name.replace("_", "-") in IDENTITY for name in seen), seen
            assert seen["x-forwarded-host"] == [f"public.{DOMAIN}"]  # it did pass
