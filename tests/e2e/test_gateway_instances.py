"""Two portal instances on one PostgreSQL database behind one nginx, as deployed for
the gateway: the portal's public server (deploy/nginx.conf) reaches instance A, the
protected apps' check (deploy/nginx-app.conf's `upstream smfa_check`) instance B. So
every sign-in and sign-out happens on A and every check on B: a session ended on one
instance is refused at its very next check on the other (SC-35: nothing is cached).

Two gunicorn processes on the real clock; codes from pyotp at time.time(), one per
new user.
"""

from __future__ import annotations

import time

import pytest
from support.db import POSTGRES_URL, needs_postgresql
from support.proxies import (
    DOMAIN,
    PORTAL_HOST,
    RULES,
    TRUST_ONE_PROXY,
    Visitor,
    echo_upstream,
    free_port,
    new_account,
    nginx_gateway,
    rd_of,
    received,
)
from support.servers import port_of, portal_instances

from standalone_mfa.core.models import WebSession
from standalone_mfa.factors import totp

pytestmark = [
    pytest.mark.server,
    needs_postgresql,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """(in-process app on the same database, the HTTPS port of nginx)."""
    folder = tmp_path_factory.mktemp("gateway-instances")
    https_port = free_port()
    settings = {
        "DATABASE_URL": POSTGRES_URL,
        "ACCESS_CONTROL": RULES,
        "GATEWAY_PORTAL_URL": f"https://{PORTAL_HOST}:{https_port}",
        "SESSION_COOKIE_DOMAIN": DOMAIN,
        **TRUST_ONE_PROXY,
    }
    with (
        portal_instances(folder, settings, count=2) as (app, [a, b]),
        echo_upstream() as app_port,
        nginx_gateway(folder, https_port, port_of(a), port_of(b), app_port),
    ):
        yield app, https_port


def url(https_port: int, name: str, path: str = "/") -> str:
    return f"https://{name}.{DOMAIN}:{https_port}{path}"


def test_signed_in_on_one_instance_checked_on_the_other_and_signed_out_there(deployment):
    app, port = deployment
    account = new_account(app, "pg", ("staff",), int(time.time()) // totp.PERIOD - 2)
    visitor = Visitor()
    page = url(port, "app1", "/doc")
    login = visitor.get(page)
    assert rd_of(login.url) == page
    landed = visitor.sign_in(login, account)  # on instance A
    assert visitor.steps == ["/mfa/verify"] and landed.url == page
    seen = received(landed)  # checked by instance B
    assert seen["remote-user"] == [account.username] and seen["remote-groups"] == ["staff"]
    assert received(visitor.get(url(port, "staff", "/")))["remote-user"] == [account.username]

    portal = url(port, "auth", "")
    back = visitor.sign_out(portal, rd=url(port, "app2", "/"))  # on instance A
    assert rd_of(back.url) == url(port, "app2", "/")  # B refused the next check
    with app.app_context():
        assert not WebSession.select().where(WebSession.user.is_null(False)).exists()
    response = visitor.get(url(port, "app1", "/doc"), follow=False)
    assert response.status_code == 302 and "/login?rd=" in response.headers["Location"]
