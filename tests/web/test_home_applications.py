"""web/auth home: the person's applications. The OpenID clients whose subjects name
them (with each one's launch URL) and the gateway apps of `APPLICATIONS` that the
gateway's rules do not deny them; nothing else, and a sentence when there is none."""

from __future__ import annotations

import html
import re

import pytest
from support.app import make_app
from support.client import Browser
from support.gateway import PortalBrowser, make_gateway_app

from standalone_mfa.core.db import db
from standalone_mfa.core.models import User, UserGroup
from standalone_mfa.oidc import clients

APPLICATIONS = [
    {"name": "Staff wiki", "url": "https://staff.example.test/wiki"},  # group:staff only
    {"name": "Vault", "url": "https://vault.example.test/"},  # two_factor: anyone signed in
    {"name": "Private", "url": "https://www.example.test/private/x"},  # deny
    {"name": "Public site", "url": "https://public.example.test/#top"},  # bypass
    {"name": "Elsewhere", "url": "https://other.test/"},  # no rule: the default, deny
]
LINK_RE = re.compile(r'<li><a href="([^"]+)">([^<]+)</a><span class="app-host">([^<]+)</span>')


def listed(browser) -> list[tuple[str, str, str]]:
    """(name, URL, host) of each application on the home page, top to bottom."""
    page = browser.get("/").get_data(as_text=True)
    return [
        (html.unescape(name), html.unescape(url), host)
        for url, name, host in LINK_RE.findall(page)
    ]


@pytest.fixture
def home_app(tmp_path, clock):
    """The gateway tests' portal and rules, three OpenID clients and APPLICATIONS;
    alice is in staff, bob in no group."""
    app = make_gateway_app(tmp_path, clock, APPLICATIONS=APPLICATIONS)
    with app.app_context():
        UserGroup.create(user=User.get(User.username == "alice"), name="staff")
        for name, uri, subjects, launch in (
            ("Grafana", "https://grafana.example.test/login/cb", ["group:staff"], None),
            ("Gitea", "https://git.example.test/user/oauth2/portal/callback", [], None),
            (
                "Jupyter",
                "https://hub.example.test/cb",
                ["user:bob"],
                "https://hub.example.test/hub",
            ),
        ):
            clients.add(name, [uri], subjects=subjects, launch_url=launch, actor="test")
    yield app
    with app.app_context():
        db.close()


def test_home_lists_the_clients_and_apps_each_person_may_use(home_app, clock):
    alice = PortalBrowser(home_app, clock)
    alice.login("alice")
    assert listed(alice) == [
        ("Gitea", "https://git.example.test/", "git.example.test"),
        ("Grafana", "https://grafana.example.test/", "grafana.example.test"),
        ("Public site", "https://public.example.test/#top", "public.example.test"),
        ("Staff wiki", "https://staff.example.test/wiki", "staff.example.test"),
        ("Vault", "https://vault.example.test/", "vault.example.test"),
    ]
    bob = PortalBrowser(home_app, clock)
    bob.login("bob")
    assert [name for name, _url, _host in listed(bob)] == [
        "Gitea",
        "Jupyter",
        "Public site",
        "Vault",
    ]
    assert ("Jupyter", "https://hub.example.test/hub", "hub.example.test") in listed(bob)


def test_home_follows_a_change_of_groups_at_once(home_app, clock):
    bob = PortalBrowser(home_app, clock)
    bob.login("bob")
    assert "Staff wiki" not in [name for name, _u, _h in listed(bob)]
    with home_app.app_context():
        UserGroup.create(user=User.get(User.username == "bob"), name="staff")
    names = [name for name, _u, _h in listed(bob)]
    assert "Staff wiki" in names and "Grafana" in names


def test_home_says_when_nothing_is_registered(app, clock, browser):
    browser.login("alice")
    page = browser.get("/").get_data(as_text=True)
    assert 'id="no-applications"' in page
    assert "No application is registered for you yet." in page
    assert LINK_RE.search(page) is None


def test_without_a_gateway_the_setting_lists_its_apps_to_everyone(tmp_path, clock):
    app = make_app(tmp_path, clock, APPLICATIONS=APPLICATIONS[:2])
    try:
        signed_in = Browser(app, clock)
        signed_in.login("bob")
        assert [name for name, _u, _h in listed(signed_in)] == ["Staff wiki", "Vault"]
    finally:
        with app.app_context():
            db.close()


def test_an_application_name_is_escaped(home_app, clock):
    with home_app.app_context():
        clients.add("<b>Bold</b>", ["https://bold.example.test/cb"], actor="test")
    alice = PortalBrowser(home_app, clock)
    alice.login("alice")
    page = alice.get("/").get_data(as_text=True)
    assert "<b>Bold</b>" not in page and "&lt;b&gt;Bold&lt;/b&gt;" in page
