"""core/config and instance: the app refuses to start without valid keys, and reads the
instance config, then the environment; the instance config is written once."""

from __future__ import annotations

import json

import pytest

from standalone_mfa import create_app
from standalone_mfa.core.config import ConfigurationError
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
