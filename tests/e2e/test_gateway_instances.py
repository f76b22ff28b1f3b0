"""Two portal instances on one PostgreSQL database behind one nginx, as deployed for
the gateway: the portal's public server (deploy/nginx.conf) reaches instance A, the
protected apps' check (deploy/nginx-app.conf's `upstream smfa_check`) instance B. So
every sign-in and sign-out happens on A and every check on B: a session ended on one
instance is refused at its very next check on the other (SC-35: nothing is cached).

Two gunicorn processes on the real clock; codes from pyotp at time.time(), one per
new user.
"""

from __future__ import annotations

import os
import time

import pytest
from support.app import fresh_schema
from support.proxies import (
    DOMAIN,
    PORTAL_HOST,
    RULES,
    TRUST_ONE_PROXY,
    Visitor,
    echo_upstream,
    free_port,
    gunicorn_portal,
    new_account,
    nginx_gateway,
    rd_of,
    received,
    write_portal_instance,
)

from standalone_mfa import create_app
from standalone_mfa.core.db import db
from standalone_mfa.core.models import WebSession
from standalone_mfa.directory import settings
from standalone_mfa.factors import totp

PG_URL = os.environ.get("TEST_DATABASE_URL", "")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not PG_URL.startswith("postgres"),
        reason="several instances need a shared PostgreSQL: set "
        "TEST_DATABASE_URL=postgresql://... (make test in CI does)",
    ),
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """(in-process app on the same database, the HTTPS port of nginx)."""
    folder = tmp_path_factory.mktemp("gateway-instances")
    https_port = free_port()
    instance = write_portal_instance(
        folder / "instance",
        {
            "DATABASE_URL": PG_URL,
            "ACCESS_CONTROL": RULES,
            "GATEWAY_PORTAL_URL": f"https://{PORTAL_HOST}:{https_port}",
            "SESSION_COOKIE_DOMAIN": DOMAIN,
            **TRUST_ONE_PROXY,
        },
    )
    app = create_app(instance_path=str(instance))
    with app.app_context():
        fresh_schema()  # the real upgrade, on the shared database
        settings.set_mfa_method("totp", actor="test")
    try:
        with (
            gunicorn_portal(instance, folder / "a.log") as port_a,
            gunicorn_portal(instance, folder / "b.log") as port_b,
            echo_upstream() as app_port,
            nginx_gateway(folder, https_port, port_a, port_b, app_port),
        ):
            yield app, https_port
    finally:
        with app.app_context():
            db.close()


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
