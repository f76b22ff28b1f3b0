"""core/config APPLICATIONS: the home page's gateway apps, checked at start (a name
and an http(s) URL of a host each), from config.py or the environment's JSON."""

from __future__ import annotations

import json

import pytest
from support.app import make_app

from standalone_mfa import create_app
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.core.crypto import generate_key


def test_applications_are_read_and_kept(tmp_path, clock):
    app = make_app(
        tmp_path,
        clock,
        APPLICATIONS=[{"name": "  Team   wiki ", "url": "https://wiki.example.test:8443/w"}],
    )
    assert app.config["APPLICATIONS"] == [
        {"name": "Team wiki", "url": "https://wiki.example.test:8443/w"}
    ]


def test_applications_from_the_environment_as_json(tmp_path, monkeypatch):
    entries = [{"name": "Wiki", "url": "http://wiki.example.test/"}]
    monkeypatch.setenv("FLASK_SECRET_KEY", "x" * 64)
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", json.dumps([generate_key()]))
    monkeypatch.setenv("FLASK_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    monkeypatch.setenv("FLASK_APPLICATIONS", json.dumps(entries))
    app = create_app(instance_path=str(tmp_path))
    assert app.config["APPLICATIONS"] == entries


@pytest.mark.parametrize(
    "value",
    [
        {"name": "Wiki", "url": "https://wiki.example.test/"},  # not a list
        [{"name": "", "url": "https://wiki.example.test/"}],
        [{"name": "   ", "url": "https://wiki.example.test/"}],
        [{"name": "Wiki"}],
        [{"name": "Wiki", "url": "https://wiki.example.test/", "icon": "w.png"}],
        [{"name": "Wiki", "url": "ftp://wiki.example.test/"}],
        [{"name": "Wiki", "url": "javascript:alert(1)"}],
        [{"name": "Wiki", "url": "https://user:pw@wiki.example.test/"}],
        [{"name": "Wiki", "url": "https:///nohost"}],
        [{"name": "Wiki", "url": "https://wiki.example.test:99999/"}],
        [{"name": "Wiki", "url": "https://wiki example/"}],
        [{"name": 3, "url": "https://wiki.example.test/"}],
        "[not json",
    ],
)
def test_a_malformed_application_stops_the_app(tmp_path, clock, value):
    with pytest.raises(ConfigurationError, match="^APPLICATIONS must be"):
        make_app(tmp_path, clock, APPLICATIONS=value)
