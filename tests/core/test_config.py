"""core/config and instance: the app refuses to start without valid keys, and reads the
instance config, then the environment; the instance config is written once. Every
setting with bounds has its default and bounds in one place (`KEYS`), a value out of
bounds stops the app, and a changed number changes what sign-in does."""

from __future__ import annotations

import json

import pytest
from support.app import make_app

from standalone_mfa import create_app
from standalone_mfa.core.config import KEYS, ConfigurationError
from standalone_mfa.core.crypto import generate_key


def test_refuses_to_start_without_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_MFA_ENCRYPTION_KEYS", raising=False)
    with pytest.raises(ConfigurationError) as raised:
        create_app(instance_path=str(tmp_path))
    message = str(raised.value)
    assert "SECRET_KEY and MFA_ENCRYPTION_KEYS are not set" in message
    assert "make run" in message and "FLASK_MFA_ENCRYPTION_KEYS" in message


def test_refuses_malformed_encryption_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASK_SECRET_KEY", "x" * 64)
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", '["not-a-fernet-key"]')
    with pytest.raises(ConfigurationError, match="Fernet"):
        create_app(instance_path=str(tmp_path))


def test_reads_instance_config_then_environment(tmp_path, monkeypatch):
    old, new = generate_key(), generate_key()
    (tmp_path / "config.py").write_text(
        f'SECRET_KEY = "from-file"\nMFA_ENCRYPTION_KEYS = ["{old}"]\nMFA_ISSUER = "Acme"\n'
    )
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", json.dumps([new, old]))
    monkeypatch.setenv("FLASK_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    app = create_app(instance_path=str(tmp_path))
    assert app.config["SECRET_KEY"] == "from-file"
    assert app.config["MFA_ENCRYPTION_KEYS"] == [new, old]
    assert app.config["MFA_ISSUER"] == "Acme"
    assert app.config["DATABASE_URL"].endswith("env.sqlite3")


def test_instance_config_is_written_once_and_never_overwritten(tmp_path):
    from standalone_mfa.instance import write_config

    path = tmp_path / "config.py"
    assert write_config(path)
    first = path.read_text()
    assert not write_config(path)
    assert path.read_text() == first
    assert path.stat().st_mode & 0o077 == 0
    namespace = {}
    exec(compile(first, str(path), "exec"), namespace)  # noqa: S102 - our own generated file
    assert len(namespace["SECRET_KEY"]) >= 64
    assert len(namespace["MFA_ENCRYPTION_KEYS"]) == 1


BOUNDED = {key.name: key for key in KEYS if key.kind.bounds}


def test_every_bounded_setting_has_a_default_within_its_bounds():
    assert {"MFA_LOCK_AFTER", "MAIL_TIMEOUT", "PROXY_FIX_X_FOR"} <= set(BOUNDED)
    for key in BOUNDED.values():
        lowest, highest = key.kind.bounds
        assert lowest <= key.default <= highest, key.name
        assert key.help


@pytest.mark.parametrize("name", sorted(BOUNDED))
@pytest.mark.parametrize("bad", ["lowest", "highest", "text", "bool"])
def test_a_setting_out_of_its_bounds_stops_the_app(tmp_path, clock, name, bad):
    lowest, highest = BOUNDED[name].kind.bounds
    value = {"lowest": lowest - 1, "highest": highest + 1, "text": "five", "bool": True}[bad]
    with pytest.raises(ConfigurationError, match=f"^{name} must be a"):
        make_app(tmp_path, clock, **{name: value})


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_a_setting_at_its_bounds_starts(tmp_path, clock, name):
    lowest, highest = BOUNDED[name].kind.bounds
    both = {"MFA_BACKOFF_AFTER": 1, "MFA_LOCK_AFTER": 1000}  # the lock after the back-off
    for value in (lowest, highest):
        folder = tmp_path / str(value)
        folder.mkdir()
        app = make_app(folder, clock, **{**both, name: value})
        assert app.config[name] == value


def test_a_number_from_the_environment_may_be_a_string(tmp_path, clock):
    app = make_app(tmp_path, clock, MFA_BACKOFF_AFTER="3")
    assert app.config["MFA_BACKOFF_AFTER"] == 3


def test_the_lock_must_come_after_the_backoff(tmp_path, clock):
    with pytest.raises(ConfigurationError, match="MFA_LOCK_AFTER"):
        make_app(tmp_path, clock, MFA_BACKOFF_AFTER=5, MFA_LOCK_AFTER=5)


def test_sc07_a_lower_backoff_ends_the_pending_sign_in_sooner(tmp_path, clock):
    from support.client import Browser

    from standalone_mfa.directory import settings

    app = make_app(tmp_path, clock, MFA_BACKOFF_AFTER=2, MFA_LOCK_AFTER=4)
    with app.app_context():
        settings.set_mfa_method("totp", actor="test")
    browser = Browser(app, clock)
    secret = browser.enrol()
    browser.logout()
    browser.login()
    wrong = str((int(browser.code(secret)) + 1) % 1_000_000).zfill(6)
    assert browser.post("/mfa/verify", {"code": wrong}).headers["Location"] == "/mfa/verify"
    second = browser.post("/mfa/verify", {"code": wrong})
    assert second.headers["Location"] == "/login"  # after 2, not 5
    assert "Too many wrong codes. Please sign in again." in browser.page("/login")


def test_sc07_a_lower_password_backoff_makes_the_next_try_wait(tmp_path, clock):
    from support.client import Browser

    app = make_app(tmp_path, clock, PASSWORD_BACKOFF_AFTER=2, BACKOFF_MAX_SECONDS=60)
    browser = Browser(app, clock)
    for _ in range(2):
        browser.login(password="not the password")
    page = browser.login().get_data(as_text=True)
    assert "Wait 1 second" in page
    clock.advance(1)
    assert browser.login().headers["Location"] == "/"
