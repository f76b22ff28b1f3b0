"""cli: the `flask --app standalone_mfa` commands (init-db, user, mfa, token, rotate-keys,
audit prune, user unlock, user group add/remove, user show) and their clear messages
when something is wrong (SC-30)."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet, InvalidToken
from support.app import PASSWORD, drop_schema, make_app, test_config
from support.client import Browser, cli, totp_api
from support.db import (
    add_events,
    audit_events,
    credential,
    credential_secret,
    failures,
    mfa_method,
    sessions_of,
    set_code_failures,
)
from support.steps import confirm_for_new_authenticator, new_authenticator_secret

from standalone_mfa import create_app
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.crypto import generate_key
from standalone_mfa.core.db import db
from standalone_mfa.core.models import ApiToken, AuditEvent, TotpCredential, User
from standalone_mfa.directory import groups, settings
from standalone_mfa.directory.users import find_user


def close_db():
    if not db.is_closed():
        db.close()


def reopen(tmp_path, clock, **overrides):
    """A second app (another process, say) on the same database, without make_app's
    users. The database handle is global: the previous app's connection is closed."""
    close_db()
    return create_app(test_config(tmp_path, clock, **overrides))


def fresh_app(tmp_path, clock):
    """An app on an empty database (no tables, no users), as after installation."""
    app = create_app(test_config(tmp_path, clock))
    with app.app_context():
        drop_schema()
        close_db()
    return app


# --- the command line


def test_cli_init_db_creates_first_admin_once(tmp_path, clock):
    app = fresh_app(tmp_path, clock)
    try:
        first = cli(app, "init-db")
        assert first.exit_code == 0, first.output
        passwords = re.findall(r"password: (\S+)", first.output)
        assert len(passwords) == 1, first.output
        password = passwords[0]
        assert first.output.count(password) == 1
        with app.app_context():
            (admin,) = User.select()
            assert (admin.username, admin.is_admin) == ("admin", True)
            hash_before = admin.password_hash
            assert password not in hash_before

        second = cli(app, "init-db")
        assert second.exit_code == 0, second.output
        assert "password" not in without_schema_line(second.output)
        with app.app_context():
            assert User.select().count() == 1
            assert User.get().password_hash == hash_before
            created = AuditEvent.select().where(AuditEvent.event == "user_created")
            assert [(e.username, e.actor) for e in created] == [("admin", "cli")]

        browser = Browser(app, clock)
        assert browser.login("admin", password).headers["Location"] == "/"
        assert browser.get("/admin/mfa").status_code == 200
    finally:
        close_db()


def without_schema_line(output: str) -> str:
    """The output but its "database schema at <migration>" line, whose name (such as
    005_app_passwords) may hold the word."""
    lines = output.lower().splitlines()
    return "\n".join(line for line in lines if not line.startswith("database schema at"))


def test_cli_init_db_on_existing_users_creates_no_admin(app):
    result = cli(app, "init-db")
    assert result.exit_code == 0, result.output
    assert "password" not in without_schema_line(result.output)
    with app.app_context():
        assert User.get_or_none(User.username == "admin") is None
        assert User.select().count() == 3


@pytest.mark.parametrize("admin_flag", [False, True])
def test_cli_user_create_can_sign_in(app, clock, admin_flag):
    password = "a long enough password"
    args = ["user", "create", "carol", "--password-stdin"] + (["--admin"] if admin_flag else [])
    result = cli(app, *args, input=password + "\n")
    assert result.exit_code == 0, result.output
    assert "carol" in result.output
    assert password not in result.output
    with app.app_context():
        assert User.get(User.username == "carol").is_admin is admin_flag
    browser = Browser(app, clock)
    assert browser.login("carol", password).headers["Location"] == "/"
    assert browser.get("/admin/").status_code == (200 if admin_flag else 403)


def test_cli_user_create_duplicate_fails(app):
    with app.app_context():
        hash_before = User.get(User.username == "alice").password_hash
    result = cli(app, "user", "create", "alice", "--password-stdin", input="another password\n")
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert User.get(User.username == "alice").password_hash == hash_before
        assert User.select().count() == 3


def test_cli_user_create_short_password_fails(app):
    result = cli(app, "user", "create", "dave", "--password-stdin", input="short\n")
    assert result.exit_code != 0
    assert "at least 8 characters" in result.output
    assert "Traceback" not in result.output
    with app.app_context():
        assert User.get_or_none(User.username == "dave") is None


def test_cli_mfa_method_shows_and_sets(app):
    result = cli(app, "mfa", "method")
    assert result.exit_code == 0
    assert result.output.strip() == "disabled"

    result = cli(app, "mfa", "method", "totp")
    assert result.exit_code == 0, result.output
    assert "TOTP" in result.output
    assert mfa_method(app) == "totp"
    assert cli(app, "mfa", "method").output.strip() == "totp"
    (event,) = audit_events(app, "mfa_method_changed")
    assert (event.actor, event.outcome) == ("cli", "ok")


def test_cli_mfa_method_refuses_unknown(totp_app):
    result = cli(totp_app, "mfa", "method", "sms")
    assert result.exit_code != 0
    assert "sms" in result.output
    assert mfa_method(totp_app) == "totp"
    assert [e.actor for e in audit_events(totp_app, "mfa_method_changed")] == ["test"]


def test_cli_mfa_reset_enrolled_user_ends_sessions(totp_app, browser):
    browser.enrol()
    assert browser.get("/").status_code == 200
    result = cli(totp_app, "mfa", "reset", "alice")
    assert result.exit_code == 0, result.output
    assert "alice" in result.output
    assert credential(totp_app, "alice") is None
    assert len(sessions_of(totp_app, "alice")) == 0
    response = browser.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    (event,) = audit_events(totp_app, "totp_reset")
    assert (event.username, event.actor, event.outcome) == ("alice", "cli", "ok")


def test_cli_mfa_reset_unknown_or_not_enrolled_fails(totp_app):
    result = cli(totp_app, "mfa", "reset", "nobody")
    assert result.exit_code != 0
    assert "No user named 'nobody'" in result.output
    result = cli(totp_app, "mfa", "reset", "bob")
    assert result.exit_code != 0
    assert "no TOTP credential" in result.output
    assert audit_events(totp_app, "totp_reset") == []


def test_cli_token_create_prints_working_token_last(totp_app, browser):
    browser.enrol()
    result = cli(totp_app, "token", "create", "root")
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("smfa_")
    response = totp_api(totp_app, "GET", "alice", token)
    assert response.status_code == 200
    assert response.get_json()["enrolled"] is True
    (event,) = audit_events(totp_app, "token_created")
    assert (event.username, event.actor) == ("root", "cli")
    with totp_app.app_context():
        assert ApiToken.select().where(ApiToken.token_hash == token).count() == 0


def test_cli_token_create_for_normal_user_warns_and_api_refuses(app):
    result = cli(app, "token", "create", "alice")
    assert result.exit_code == 0, result.output
    assert "not an administrator" in result.output
    token = result.output.strip().splitlines()[-1]
    assert totp_api(app, "GET", "alice", token).status_code == 403


def test_sc30_cli_token_revoke_stops_the_token_at_once_and_is_audited(app):
    tokens_made = [cli(app, "token", "create", "root").output.strip().splitlines()[-1]]
    tokens_made.append(cli(app, "token", "create", "root").output.strip().splitlines()[-1])
    listing = cli(app, "token", "list", "root")
    assert listing.exit_code == 0 and listing.output.count("created ") == 2
    assert not any(token in listing.output for token in tokens_made)  # never shown again
    first_id = listing.output.split("\t", 1)[0]

    result = cli(app, "token", "revoke", "root", "--id", first_id)
    assert result.exit_code == 0 and "Revoked 1 API token" in result.output
    assert totp_api(app, "GET", "alice", tokens_made[0]).status_code == 401
    assert (
        totp_api(app, "GET", "alice", tokens_made[1]).status_code == 200
    )  # the other still works
    result = cli(app, "token", "revoke", "root", "--id", first_id)
    assert result.exit_code != 0 and "has no token" in result.output

    result = cli(app, "token", "revoke", "root")
    assert result.exit_code == 0 and "Revoked 1 API token" in result.output
    assert totp_api(app, "GET", "alice", tokens_made[1]).status_code == 401
    revoked = audit_events(app, "token_revoked")
    assert [(e.username, e.actor) for e in revoked] == [("root", "cli")] * 3
    assert all(token not in (e.detail or "") for e in revoked for token in tokens_made)
    assert cli(app, "token", "revoke", "nobody").exit_code != 0


def test_cli_token_create_unknown_user_fails(app):
    result = cli(app, "token", "create", "nobody")
    assert result.exit_code != 0
    assert "No user named 'nobody'" in result.output
    with app.app_context():
        assert ApiToken.select().count() == 0


def test_cli_rotate_keys_reencrypts_with_newest_key(tmp_path, clock):
    old_key, new_key = generate_key(), generate_key()
    try:
        first = make_app(tmp_path, clock, MFA_ENCRYPTION_KEYS=[old_key])
        with first.app_context():
            settings.set_mfa_method("totp", actor="test")
        secret = Browser(first, clock).enrol()

        rotating = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key, old_key])
        result = cli(rotating, "mfa", "rotate-keys")
        assert result.exit_code == 0, result.output
        assert "1" in result.output
        with rotating.app_context():
            ciphertext = TotpCredential.get().secret_encrypted
        assert Fernet(new_key).decrypt(ciphertext.encode()).decode() == secret
        with pytest.raises(InvalidToken):
            Fernet(old_key).decrypt(ciphertext.encode())

        # With the old key gone, alice still signs in with her app.
        newest_only = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key])
        clock.advance(60)
        browser = Browser(newest_only, clock)
        assert browser.login().headers["Location"] == "/mfa/verify"
        response = browser.post("/mfa/verify", {"code": browser.code(secret)})
        assert response.headers["Location"] == "/"
    finally:
        close_db()


def test_cli_rotate_keys_reencrypts_pending_setup_secrets(tmp_path, clock):
    old_key, new_key = generate_key(), generate_key()
    try:
        first = make_app(tmp_path, clock, MFA_ENCRYPTION_KEYS=[old_key])
        with first.app_context():
            settings.set_mfa_method("totp", actor="test")
        browser = Browser(first, clock)
        assert browser.login().headers["Location"] == "/mfa/setup"
        secret = browser.setup_secret()
        cookie = browser.cookie()

        rotating = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key, old_key])
        assert cli(rotating, "mfa", "rotate-keys").exit_code == 0

        newest_only = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key])
        browser = Browser(newest_only, clock)
        browser.client.set_cookie(newest_only.config["SESSION_COOKIE_NAME"], cookie)
        response = browser.get("/mfa/setup")
        assert response.status_code == 200
        assert browser.setup_secret() == secret
        response = browser.submit_code("/mfa/setup", {"code": browser.code(secret)})
        assert response.headers["Location"] == "/"
    finally:
        close_db()


def test_cli_rotate_keys_reencrypts_a_new_authenticator_being_set_up(tmp_path, clock):
    """Halfway through Account security's "move to a new authenticator" (the new
    secret shown, its first code not yet entered), a rotation that then drops the old
    key leaves the set-up working: the secret has the same home as a sign-in's."""
    old_key, new_key = generate_key(), generate_key()
    try:
        first = make_app(tmp_path, clock, MFA_ENCRYPTION_KEYS=[old_key])
        with first.app_context():
            settings.set_mfa_method("totp", actor="test")
        browser = Browser(first, clock)
        old_secret = browser.enrol()
        clock.advance(30)
        response = confirm_for_new_authenticator(browser, PASSWORD, browser.code(old_secret))
        assert response.headers["Location"] == "/account/authenticator/new"
        new_secret = new_authenticator_secret(browser)
        cookie = browser.cookie()

        rotating = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key, old_key])
        assert cli(rotating, "mfa", "rotate-keys").exit_code == 0

        newest_only = reopen(tmp_path, clock, MFA_ENCRYPTION_KEYS=[new_key])
        browser = Browser(newest_only, clock)
        browser.client.set_cookie(newest_only.config["SESSION_COOKIE_NAME"], cookie)
        assert new_authenticator_secret(browser) == new_secret
        clock.advance(30)
        response = browser.post("/account/authenticator/new", {"code": browser.code(new_secret)})
        assert response.headers["Location"] == "/account/security"
        assert credential_secret(newest_only, "alice") == new_secret
    finally:
        close_db()


# --- audit prune


def test_cli_audit_prune_deletes_old_events_and_says_how_many(app, clock):
    day = 24 * 3600
    add_events(
        app,
        clock,
        [(-400 * day, "unlock", "bob", "root"), (-366 * day, "unlock", "bob", "root")]
        + [(-365 * day + 1, "unlock", "alice", "root"), (-10 * day, "unlock", "alice", "root")],
    )
    before = len(audit_events(app))
    result = cli(app, "audit", "prune", "--older-than", "365d")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Deleted 2 audit events older than 365 days."
    remaining = audit_events(app)
    assert len(remaining) == before - 2 + 1
    assert [(e.event, e.username) for e in remaining if e.event == "unlock"] == [
        ("unlock", "alice"),
        ("unlock", "alice"),
    ]
    (pruned,) = audit_events(app, "audit_pruned")
    assert (pruned.actor, pruned.outcome) == ("cli", "ok")
    assert pruned.detail.startswith("2 events before 2025-11-28T12:00:00")
    result = cli(app, "audit", "prune", "--older-than", "30d")  # the one from 365 days ago
    assert result.output.strip() == "Deleted 1 audit events older than 30 days."


@pytest.mark.parametrize("value", ["365", "abc", "0d", "-5d", "12w", "", "1.5d", "99999999d"])
def test_cli_audit_prune_refuses_bad_input(app, value):
    before = len(audit_events(app))
    result = cli(app, "audit", "prune", "--older-than", value)
    assert result.exit_code == 2
    assert "is not a number of days such as 365d" in result.output
    assert len(audit_events(app)) == before


def test_cli_audit_prune_needs_the_option(app):
    result = cli(app, "audit", "prune")
    assert result.exit_code == 2
    assert "--older-than" in result.output


# --- user unlock (CLI)


def test_cli_user_unlock(app):
    set_code_failures(app, "alice", 7)
    result = cli(app, "user", "unlock", "Alice")
    assert result.exit_code == 0
    assert result.output.strip() == "Unlocked 'alice' (7 wrong codes forgiven)."
    assert failures(app, "alice") == 0
    (event,) = audit_events(app, "unlock")
    assert (event.username, event.actor, event.outcome) == ("alice", "cli", "ok")
    result = cli(app, "user", "unlock", "alice")
    assert result.exit_code == 0
    assert "was not throttled or locked; nothing changed" in result.output


def test_cli_user_unlock_unknown_user_fails(app):
    result = cli(app, "user", "unlock", "nobody")
    assert result.exit_code == 1
    assert "No user named 'nobody'." in result.output
    assert audit_events(app, "unlock") == []


def test_cli_mfa_reset_without_credential_points_to_unlock(totp_app):
    set_code_failures(totp_app, "alice", DEFAULTS["MFA_LOCK_AFTER"])
    result = cli(totp_app, "mfa", "reset", "alice")
    assert result.exit_code == 1
    assert "user unlock alice" in result.output
    assert failures(totp_app, "alice") == DEFAULTS["MFA_LOCK_AFTER"]
    assert audit_events(totp_app, "totp_reset") == []


# --- user group add / remove, user show (CLI)


def test_cli_user_group_add_and_remove_say_what_they_did_and_are_audited(app):
    result = cli(app, "user", "group", "add", "Alice", "staff")
    assert (result.exit_code, result.output) == (0, "alice is now in the group staff.\n")
    result = cli(app, "user", "group", "add", "alice", "staff")
    assert result.exit_code == 0
    assert result.output == "alice is already in the group staff; nothing changed.\n"
    cli(app, "user", "group", "add", "alice", "wiki")
    with app.app_context():
        assert groups.groups_of(find_user("alice")) == ("staff", "wiki")
    result = cli(app, "user", "group", "remove", "alice", "staff")
    assert (result.exit_code, result.output) == (0, "alice is no longer in the group staff.\n")
    result = cli(app, "user", "group", "remove", "alice", "staff")
    assert result.exit_code == 0
    assert result.output == "alice is not in the group staff; nothing changed.\n"
    with app.app_context():
        assert groups.groups_of(find_user("alice")) == ("wiki",)
    changes = [e for e in audit_events(app) if e.event in ("group_add", "group_remove")]
    assert [(e.event, e.outcome, e.username, e.actor, e.detail) for e in changes] == [
        ("group_add", "ok", "alice", "cli", "staff"),
        ("group_add", "unchanged", "alice", "cli", "staff"),
        ("group_add", "ok", "alice", "cli", "wiki"),
        ("group_remove", "ok", "alice", "cli", "staff"),
        ("group_remove", "unchanged", "alice", "cli", "staff"),
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("add", "nobody", "staff"),
        ("remove", "nobody", "staff"),
        ("add", "alice", "staff,admins"),
        ("add", "alice", "wiki editors"),
        ("add", "alice", ""),
        ("add", "alice", "x" * 65),
        ("add", "alice", "staff\nRemote-User: root"),
        ("remove", "alice", "équipe"),
        ("add", "nobody", "bad,name"),
    ],
)
def test_cli_user_group_unknown_user_or_bad_name_exits_1_and_changes_nothing(app, args):
    with app.app_context():
        groups.add(find_user("alice"), "wiki", actor="test")
    result = cli(app, "user", "group", *args)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ")
    if args[1] == "nobody":
        assert "No user named 'nobody'." in result.output
    else:
        assert "A group name is 1-64 characters" in result.output
        assert "Nothing changed." in result.output
    with app.app_context():
        assert groups.groups_of(find_user("alice")) == ("wiki",)
    assert [e.actor for e in audit_events(app) if e.event.startswith("group")] == ["test"]


def test_cli_user_group_needs_both_arguments(app):
    result = cli(app, "user", "group", "add", "alice")
    assert result.exit_code == 2
    assert "Missing argument 'GROUP'" in result.output
    assert audit_events(app, "group_add") == []


def test_cli_user_show_tells_admin_flag_mfa_status_throttles_and_groups(totp_app, browser, clock):
    clock.advance(90)
    browser.enrol()  # set up and signed in at 12:01:30
    for group in ("wiki", "staff"):
        cli(totp_app, "user", "group", "add", "alice", group)
    set_code_failures(totp_app, "alice", 2)
    result = cli(totp_app, "user", "show", "ALICE")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "username:      alice",
        "administrator: no",
        "created:       2026-11-28 12:00 UTC",
        "two-factor:    set up on 2026-11-28 12:01 UTC",
        "codes:         2 wrong in a row",
        "passwords:     ok",
        "last sign-in:  2026-11-28 12:01 UTC",
        "groups:        staff, wiki",
        "email:         none",
        "time zone:     UTC",
        "app passwords: none",
        "keys:          none",
    ]
    set_code_failures(totp_app, "root", DEFAULTS["MFA_LOCK_AFTER"])
    lines = dict(
        line.split(":", 1) for line in cli(totp_app, "user", "show", "root").output.splitlines()
    )
    assert lines["administrator"].strip() == "yes"
    assert lines["two-factor"].strip() == "not set up"
    assert lines["codes"].strip().startswith("locked (50 wrong")
    assert lines["last sign-in"].strip() == "never"
    assert lines["groups"].strip() == "none"
    # After an administrator's reset, it says so.
    cli(totp_app, "mfa", "reset", "alice")
    output = cli(totp_app, "user", "show", "alice").output
    assert (
        "two-factor:    not set up (reset by an administrator on 2026-11-28 12:01 UTC)" in output
    )
    # Nothing secret in it.
    assert "password_hash" not in output and "pbkdf2" not in output


def test_cli_user_show_unknown_user_exits_1(app):
    result = cli(app, "user", "show", "nobody")
    assert result.exit_code == 1
    assert "No user named 'nobody'." in result.output


# --- clear messages when something is wrong


@pytest.mark.parametrize(
    "args",
    [
        ("mfa", "method"),
        ("mfa", "reset", "alice"),
        ("token", "create", "root"),
        ("user", "show", "alice"),
        ("user", "group", "add", "alice", "staff"),
        ("user", "group", "remove", "alice", "staff"),
    ],
)
def test_cli_before_init_db_says_so(tmp_path, clock, args):
    (tmp_path / "empty").mkdir()
    empty = f"sqlite:///{tmp_path}/empty/db.sqlite3"  # a database with no tables yet
    app = create_app(test_config(tmp_path / "empty", clock, DATABASE_URL=empty))
    result = cli(app, *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "init-db" in result.output


def test_cli_rotate_keys_without_the_old_key_gives_a_clear_message(
    totp_app, browser, tmp_path, clock
):
    browser.enrol()
    with totp_app.app_context():
        before = TotpCredential.get().secret_encrypted
    config = test_config(tmp_path, clock, MFA_ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    wrong_keys = create_app(config)  # the same database, but the old key is gone
    result = cli(wrong_keys, "mfa", "rotate-keys")
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "key" in result.output.lower()
    with wrong_keys.app_context():
        assert TotpCredential.get().secret_encrypted == before


def test_cli_user_create_too_long_password_says_too_long(app):
    result = cli(app, "user", "create", "carol", "--password-stdin", input="p" * 2000 + "\n")
    assert result.exit_code == 1
    assert "at least" not in result.output
    with app.app_context():
        assert find_user("carol") is None


@pytest.mark.parametrize(
    "username", ["a\x00b", "x" * 10_000, "al ice", "alice:x", "\u00e9mile", "_under", ""]
)
def test_cli_user_create_odd_username_gives_a_clear_message(app, username):
    result = cli(app, "user", "create", username, "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith("Error: ")
    with app.app_context():
        assert User.select().count() == 3  # alice, bob, root


def test_cli_mfa_reset_unusual_names_give_a_clear_message(app):
    for username in ("x" * 10_000, "\u212aim", "ALICE\x00"):
        result = cli(app, "mfa", "reset", username)
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert result.output.startswith("Error: ")
