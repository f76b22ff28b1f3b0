"""The gateway's `phishing_resistant` policy (SC-56) through a real nginx: the shipped
configuration over TLS on *.example.test, the portal in this process. A password and
a code get through a two_factor app, not the phishing_resistant one (whose link shows
how to add a key); a passkey sign-in on the portal's exact origin gets through; an
answer made on another origin is refused."""

from __future__ import annotations

import html
import json
import re

import pytest
from support.app import START, make_app
from support.passkeys import OPTIONS_RE, register
from support.proxies import (
    DOMAIN,
    Gateway,
    Visitor,
    echo_upstream,
    nginx_gateway,
    portal_config,
    rd_of,
    received,
)
from support.servers import free_port, quiet_server
from support.softkey import SoftKey

from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.db import db

# --- Through a real nginx (the shipped configuration), over TLS on *.example.test

NGINX_RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": [f"secure.{DOMAIN}"], "policy": "phishing_resistant"},
        {"domain": [f"*.{DOMAIN}"], "policy": "two_factor"},
    ],
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway-phishing-resistant")
    clock = FrozenClock(START)
    https_port = free_port()
    config = portal_config("https", https_port)
    config["ACCESS_CONTROL"] = NGINX_RULES
    app = make_app(folder, clock, **config)
    try:
        with quiet_server(app) as portal_url, echo_upstream() as app_port:
            portal_port = int(portal_url.rsplit(":", 1)[1])
            with nginx_gateway(folder, https_port, portal_port, portal_port, app_port):
                gateway = Gateway(app, clock, "https", https_port)
                gateway.set_method("totp")
                yield gateway
    finally:
        with app.app_context():
            db.close()


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_sc56_through_nginx_a_code_is_not_enough_a_passkey_is(gateway):
    gateway.clock.advance(30)
    account = gateway.account("pr", enrolled=True)
    secure = gateway.url("secure", "/vault?x=1")
    # Password and code: through a two_factor app, not the phishing_resistant one.
    visitor, _ = gateway.signed_in(account, "app1", "/")
    sent_back = visitor.get(secure)
    assert sent_back.url.startswith(f"{gateway.portal}/login?rd=")
    assert rd_of(sent_back.url) == secure
    assert 'id="add-passkey"' in sent_back.text  # no key yet: how to add one

    # A passkey sign-in, on the portal's exact origin, with its port.
    origin = gateway.portal
    key = register(gateway.app, gateway.clock, account.username, SoftKey(origin))
    fresh = Visitor()
    login = fresh.get(secure)
    options = json.loads(html.unescape(OPTIONS_RE.search(login.text).group(1)))
    assert options["rpId"] == f"auth.{DOMAIN}"
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login.text).group(1)
    action = html.unescape(re.search(r'action="(/login/passkey[^"]*)"', login.text).group(1))
    landed = fresh.open(
        "POST", gateway.portal + action, data={"csrf_token": token, "credential": key.get(options)}
    )
    assert landed.url == secure, (landed.status_code, landed.url)
    assert received(landed)["remote-user"] == [account.username]

    # Another origin (a subdomain not listed) is refused by the portal.
    stranger = Visitor()
    login = stranger.get(secure)
    options = json.loads(html.unescape(OPTIONS_RE.search(login.text).group(1)))
    key.origin = gateway.url("app1", "")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login.text).group(1)
    refused = stranger.open(
        "POST", gateway.portal + action, data={"csrf_token": token, "credential": key.get(options)}
    )
    assert refused.url.startswith(f"{gateway.portal}/login")
    assert "did not go through" in refused.text
