"""The fixtures every folder shares: an app on a fresh database with a frozen clock,
test-client browsers, a quiet live server and a real SMTP server. Fixtures only: the
plain helpers live in the `support` package (tests/support/), imported by name."""

from __future__ import annotations

import contextlib

import pytest
from support.app import START, make_app
from support.client import Browser
from support.gateway import SHARED_RULES, PortalBrowser, make_gateway_app
from support.servers import quiet_server
from support.smtp import SmtpServer, mail_config

from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.db import db
from standalone_mfa.notices import sender

# A test that asks for one of these fixtures starts a server on 127.0.0.1: it is
# marked `server` (left out of `make check`), wherever it lives.
SERVER_FIXTURES = {"serve", "smtp", "mail_app"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def _sender_forgets_the_app():
    """After each test, this process's mail sender stops using the test's app: woken
    later, it would otherwise work in the next test's database with this one's keys."""
    yield
    sender.forget()


@pytest.fixture
def clock():
    return FrozenClock(START)


@pytest.fixture
def app(tmp_path, clock):
    app = make_app(tmp_path, clock)
    yield app
    with app.app_context():
        db.close()


@pytest.fixture
def totp_app(app):
    """The app with the MFA method set to TOTP."""
    from standalone_mfa.directory import settings

    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    return app


@pytest.fixture
def browser(app, clock):
    return Browser(app, clock)


@pytest.fixture
def new_browser(app, clock):
    return lambda: Browser(app, clock)


@pytest.fixture
def serve():
    """serve(app) -> base URL of a quiet threaded werkzeug server for `app`."""
    with contextlib.ExitStack() as servers:
        yield lambda app: servers.enter_context(quiet_server(app))


@pytest.fixture
def smtp():
    """A real SMTP server on 127.0.0.1 (support/smtp.py)."""
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mail_app(tmp_path, clock, smtp):
    """The app sending notices through `smtp`; alice, bob and root have addresses."""
    from standalone_mfa.core.models import User
    from standalone_mfa.notices import sender

    app = make_app(tmp_path, clock, **mail_config(smtp))
    with app.app_context():
        for name in ("alice", "bob", "root"):
            User.update(email=f"{name}@example.com").where(User.username == name).execute()
    yield app
    sender.wait_idle(10)  # no round of this app's may outlive its database
    with app.app_context():
        db.close()


@pytest.fixture
def gateway_app(tmp_path, clock):
    """The portal of the gateway tests (support/gateway.py); alice is in staff and
    wiki-editors. A module with other rules defines its own."""
    from standalone_mfa.core.models import User, UserGroup

    app = make_gateway_app(tmp_path, clock)
    with app.app_context():
        UserGroup.create(user=User.get(User.username == "alice"), name="staff")
        UserGroup.create(user=User.get(User.username == "alice"), name="wiki-editors")
    yield app
    with app.app_context():
        db.close()


@pytest.fixture
def portal(gateway_app, clock):
    """portal() -> a new browser on the portal's host (it keeps the example.test cookie)."""
    return lambda: PortalBrowser(gateway_app, clock)


@pytest.fixture
def shared_app(tmp_path, clock):
    """A portal whose session cookie every app under example.test receives (SHARED_RULES:
    one rule, signed in with any factor)."""
    app = make_gateway_app(tmp_path, clock, rules=SHARED_RULES)
    yield app
    with app.app_context():
        db.close()
