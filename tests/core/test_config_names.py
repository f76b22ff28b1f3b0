"""core/config's table (`KEYS`): a setting misspelt in `config.py` or the environment,
or an undeclared one with our prefix, refuses the start and says what was meant; one
place turns environment text into each kind; the strict accessor `setting` raises on
a name the table lacks; and the package reads our settings only through it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from flask import Flask
from support.app import make_app, test_config

from standalone_mfa import create_app
from standalone_mfa.core import config
from standalone_mfa.core.config import ConfigurationError, UnknownSetting, setting
from standalone_mfa.core.crypto import generate_key

PACKAGE = Path(config.__file__).resolve().parent.parent


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """An instance folder with valid keys and a SQLite file of its own; nothing of the
    caller's FLASK_* environment leaks in."""
    for name in list(__import__("os").environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLASK_SECRET_KEY", "s" * 64)
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", json.dumps([generate_key()]))
    monkeypatch.setenv("FLASK_DATABASE_URL", f"sqlite:///{tmp_path}/env.sqlite3")
    return tmp_path


def start(folder, config_py: str = ""):
    (folder / "config.py").write_text(config_py)
    return create_app(instance_path=str(folder))


# --- typos -----------------------------------------------------------------------


def test_a_typo_in_config_py_refuses_the_start(instance):
    with pytest.raises(ConfigurationError) as raised:
        start(instance, "MFA_LOCK_AFTR = 5\n")
    message = str(raised.value)
    assert message.startswith("Unknown setting MFA_LOCK_AFTR: did you mean MFA_LOCK_AFTER?")
    assert str(instance / "config.py") in message
    assert "\n" not in message  # one line


def test_a_typo_in_the_environment_refuses_the_start(instance, monkeypatch):
    monkeypatch.setenv("FLASK_ACCES_CONTROL", '{"rules": []}')
    with pytest.raises(ConfigurationError) as raised:
        start(instance)
    assert str(raised.value).startswith(
        "Unknown setting FLASK_ACCES_CONTROL: did you mean FLASK_ACCESS_CONTROL?"
    )
    assert "in the environment" in str(raised.value)


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        ("MFA_LOCK_AFTRE", "MFA_LOCK_AFTER"),  # two letters swapped: one edit
        ("MFA_LOK_AFTR", "MFA_LOCK_AFTER"),  # two letters dropped
        ("SESION_IDLE_TIMEOUT", "SESSION_IDLE_TIMEOUT"),
        ("PROXYFIX_X_FOR", "PROXY_FIX_X_FOR"),
        ("SECRETKEY", "SECRET_KEY"),
        ("METRIC_TOKEN", "METRICS_TOKEN"),
        ("HSTS_INCLUDE_SUBDOMAIN", "HSTS_INCLUDE_SUBDOMAINS"),
        ("ACCESS_CONTROLS", "ACCESS_CONTROL"),
        ("GATEWAY_PORTAL_UR", "GATEWAY_PORTAL_URL"),
    ],
)
def test_names_a_typo_or_two_away_are_caught(tmp_path, clock, written, meant):
    with pytest.raises(ConfigurationError) as raised:
        make_app(tmp_path, clock, **{written: 1})
    assert str(raised.value).startswith(f"Unknown setting {written}: did you mean {meant}? (")


def test_a_lower_case_name_in_the_environment_is_caught(instance, monkeypatch):
    monkeypatch.setenv("FLASK_mfa_lock_after", "5")
    with pytest.raises(ConfigurationError, match="did you mean FLASK_MFA_LOCK_AFTER"):
        start(instance)


def test_a_typo_of_a_proxy_hop_count_also_stops_gunicorn_conf(instance, monkeypatch):
    # gunicorn.conf.py reads the hop counts without building the app.
    monkeypatch.setenv("FLASK_PROXY_FIX_X_FRO", "1")
    with pytest.raises(ConfigurationError, match="did you mean FLASK_PROXY_FIX_X_FOR"):
        config.proxy_hops(str(instance))


# --- undeclared names with our prefixes; everything else passes ---------------------


@pytest.mark.parametrize(
    "name",
    [
        "MFA_LOCKOUT_THRESHOLD",
        "SESSION_COOKIE_PATH",  # Flask's, but our cookies do not read it
        "WTF_CSRF_ENABLED",  # turning CSRF off is not a setting
        "WEBAUTHN_RP_IDENTIFIER",
        "OIDC_ISSUER_URL",
        "MAIL_DEBUG",  # would print the SMTP login to stderr
        "DATABASE_REPLICA_URL",
        "GATEWAY_RULES",
        "METRICS_BEARER",
    ],
)
def test_an_undeclared_name_with_our_prefix_refuses_the_start(instance, name):
    with pytest.raises(ConfigurationError) as raised:
        start(instance, f"{name} = 1\n")
    assert str(raised.value).startswith(f"Unknown setting {name}: not a setting of Standalone")


def test_unrelated_flask_names_pass(instance, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "0")
    monkeypatch.setenv("FLASK_APP", "standalone_mfa")
    monkeypatch.setenv("FLASK_RUN_PORT", "5001")
    app = start(
        instance,
        'SERVER_NAME = "auth.example.com"\nTRUSTED_HOSTS = ["auth.example.com"]\n'
        'PREFERRED_URL_SCHEME = "https"\nMY_OWN_NOTE = "kept"\n',
    )
    assert app.config["SERVER_NAME"] == "auth.example.com"
    assert app.config["MY_OWN_NOTE"] == "kept"


def test_no_name_of_flask_or_its_extensions_looks_like_a_typo_of_ours():
    """The threshold (two edits, one under eight letters) cannot catch a real name."""
    theirs = set(Flask("x").config) | {
        # flask_wtf.csrf, flask_mail, flask_babel, the `flask` command's FLASK_*
        "WTF_CSRF_ENABLED", "WTF_CSRF_CHECK_DEFAULT", "WTF_CSRF_SECRET_KEY",
        "WTF_CSRF_METHODS", "WTF_CSRF_FIELD_NAME", "WTF_CSRF_HEADERS", "WTF_I18N_ENABLED",
        "RECAPTCHA_PUBLIC_KEY", "MAIL_DEBUG", "MAIL_MAX_EMAILS", "MAIL_ASCII_ATTACHMENTS",
        "BABEL_DEFAULT_TIMEZONE", "BABEL_DOMAIN", "APP", "DEBUG", "ENV", "RUN_HOST",
        "RUN_PORT", "RUN_CERT", "RUN_KEY", "RUN_EXTRA_FILES", "RUN_EXCLUDE_PATTERNS",
        "SKIP_DOTENV", "ENV_FILE", "RUN_FROM_CLI", "RUN_RELOAD", "RUN_DEBUGGER", "TESTING",
        "CLOCK",
    }  # fmt: skip
    for name in sorted(theirs - set(config.BY_NAME)):
        assert config.near(name) == [], name


def test_the_edit_distance_counts_a_swap_as_one():
    assert config.distance("MFA_LOCK_AFTER", "MFA_LOCK_AFTER") == 0
    assert config.distance("MFA_LOCK_AFTR", "MFA_LOCK_AFTER") == 1
    assert config.distance("MFA_LOCK_ATFER", "MFA_LOCK_AFTER") == 1
    assert config.distance("MAIL_USE_TLS", "MAIL_USE_SSL") == 2
    assert config.distance("", "ABC") == 3


def test_the_two_mail_switches_are_each_their_own_name(tmp_path, clock):
    # Two edits apart, both declared: neither is taken for a typo of the other.
    app = make_app(tmp_path, clock, MAIL_USE_TLS=True, MAIL_USE_SSL=False)
    assert app.config["MAIL_USE_TLS"] is True


# --- values and the one coercion ----------------------------------------------------


def test_sc70_a_metrics_token_under_32_characters_refuses_the_start(tmp_path, clock):
    with pytest.raises(ConfigurationError, match="^METRICS_TOKEN must be at least 32 characters"):
        make_app(tmp_path, clock, METRICS_TOKEN="x" * 31)


def test_sc70_a_metrics_token_of_32_characters_starts(tmp_path, clock):
    app = make_app(tmp_path, clock, METRICS_TOKEN="x" * 32)
    assert setting("METRICS_TOKEN", app) == "x" * 32
    assert "metrics" in app.blueprints


def test_sc70_a_short_metrics_token_from_the_environment_refuses_the_start(instance, monkeypatch):
    monkeypatch.setenv("FLASK_METRICS_TOKEN", "12345678")  # JSON would make it a number
    with pytest.raises(ConfigurationError, match="^METRICS_TOKEN must be"):
        start(instance)


def test_environment_text_becomes_each_kind(instance, monkeypatch):
    monkeypatch.setenv("FLASK_MFA_LOCK_AFTER", "20")
    monkeypatch.setenv("FLASK_DATABASE_POOL", "false")
    monkeypatch.setenv("FLASK_DATABASE_TIMEOUT", "2.5")
    monkeypatch.setenv("FLASK_MAIL_PASSWORD", "0123")  # text stays text, zero and all
    monkeypatch.setenv("FLASK_MFA_ISSUER", "2026")
    monkeypatch.setenv("FLASK_METRICS_TOKEN", "1" * 40)
    app = start(instance)
    assert setting("MFA_LOCK_AFTER", app) == 20
    assert setting("DATABASE_POOL", app) is False
    assert setting("DATABASE_TIMEOUT", app) == 2.5
    assert setting("MAIL_PASSWORD", app) == "0123"
    assert setting("MFA_ISSUER", app) == "2026"
    assert setting("METRICS_TOKEN", app) == "1" * 40


def test_an_empty_optional_setting_in_the_environment_is_unset(instance, monkeypatch):
    monkeypatch.setenv("FLASK_METRICS_TOKEN", "")
    monkeypatch.setenv("FLASK_MAIL_SERVER", "")
    app = start(instance)
    assert setting("METRICS_TOKEN", app) is None and setting("MAIL_SERVER", app) is None
    assert "metrics" not in app.blueprints  # no /metrics at all


def test_comma_separated_encryption_keys_from_the_environment(instance, monkeypatch):
    first, second = generate_key(), generate_key()
    monkeypatch.setenv("FLASK_MFA_ENCRYPTION_KEYS", f"{first}, {second}")
    assert setting("MFA_ENCRYPTION_KEYS", start(instance)) == [first, second]


@pytest.mark.parametrize("value", ["yes", "True", "false", 2, None])
def test_a_switch_is_true_or_false_only(tmp_path, clock, value):
    with pytest.raises(ConfigurationError, match="^DATABASE_POOL must be true or false"):
        make_app(tmp_path, clock, DATABASE_POOL=value)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SESSION_COOKIE_SAMESITE", "None", "one of Lax, Strict"),
        ("SESSION_COOKIE_NAME", "smfa session", "letters, digits"),
        ("SESSION_COOKIE_NAME", "", "letters, digits"),
        ("BABEL_DEFAULT_LOCALE", "it", "one of en, fr, de, es"),
        ("PASSWORD_HASH_METHOD", "md5", "scrypt or pbkdf2"),
        ("MFA_ISSUER", "Acme:Corp", "contain no colon"),
        ("MFA_ENCRYPTION_KEYS", "not-a-key", "Fernet keys"),
        ("ACCESS_CONTROL", ["a list"], "the gateway's rules"),
        ("MAIL_DEFAULT_SENDER", "not an address", "the address notices come from"),
        ("DATABASE_TIMEOUT", 0, "a number from 0.1 to 600"),
    ],
)
def test_a_value_its_setting_does_not_accept_refuses_the_start(tmp_path, clock, name, value, says):
    with pytest.raises(ConfigurationError, match=f"^{name} must be") as raised:
        make_app(tmp_path, clock, **{name: value})
    assert says in str(raised.value)


def test_mail_needs_a_sender_and_one_kind_of_tls(tmp_path, clock):
    with pytest.raises(ConfigurationError, match="^MAIL_DEFAULT_SENDER must be set"):
        make_app(tmp_path, clock, MAIL_SERVER="smtp.example.com")
    with pytest.raises(ConfigurationError, match="^MAIL_USE_TLS and MAIL_USE_SSL"):
        make_app(tmp_path, clock, MAIL_USE_TLS=True, MAIL_USE_SSL=True)


def test_mail_suppress_send_is_left_to_flask_mail_unless_set(tmp_path, clock):
    assert "MAIL_SUPPRESS_SEND" not in make_app(tmp_path, clock).config
    (tmp_path / "b").mkdir()
    app = make_app(tmp_path / "b", clock, MAIL_SUPPRESS_SEND=True)
    assert setting("MAIL_SUPPRESS_SEND", app) is True


# --- the table and the accessor -------------------------------------------------------


def test_every_key_is_declared_once_with_help_and_a_known_topic():
    names = [key.name for key in config.KEYS]
    assert len(names) == len(set(names))
    for key in config.KEYS:
        assert key.help.strip() and key.topic in config.TOPICS, key.name
        assert key.name == key.name.upper(), key.name


def test_every_default_passes_its_own_check():
    for key in config.KEYS:
        if key.default is not config.UNSET and key.default is not None:
            assert config.checked(key, key.default) == key.default, key.name


def test_the_accessor_raises_on_an_undeclared_name(tmp_path, clock):
    app = make_app(tmp_path, clock)
    with app.app_context():
        assert setting("MFA_LOCK_AFTER") == 50
        with pytest.raises(UnknownSetting, match="did you mean MFA_LOCK_AFTER"):
            setting("MFA_LOCK_AFTR")
        with pytest.raises(UnknownSetting, match="SERVER_NAME is not a declared setting"):
            setting("SERVER_NAME")  # Flask's, read by Flask, not through us


def test_the_test_configuration_is_checked_too(tmp_path, clock):
    with pytest.raises(ConfigurationError, match="in the test configuration"):
        create_app(test_config(tmp_path, clock, MFA_LOCK_AFTR=5))


def _reads_of_declared_settings(tree: ast.AST) -> list[str]:
    """`….config["NAME"]` or `….config.get("NAME")` of a declared NAME, read (not set)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            target, name = node.value, node.slice
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr not in ("get", "pop", "setdefault") or not node.args:
                continue
            target, name = node.func.value, node.args[0]
        else:
            continue
        is_config = isinstance(target, ast.Attribute) and target.attr == "config"
        is_config |= isinstance(target, ast.Name) and target.id == "config"
        if is_config and isinstance(name, ast.Constant) and name.value in config.BY_NAME:
            found.append(f"{name.value} (line {node.lineno})")
    return found


def test_the_package_reads_settings_only_through_the_accessor():
    raw = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("config.py",) and path.parent.name == "core":
            continue  # where they are loaded and checked
        reads = _reads_of_declared_settings(ast.parse(path.read_text()))
        if reads:
            raw[str(path.relative_to(PACKAGE))] = reads
    assert not raw, f"read setting() instead: {raw}"


def test_the_raw_read_finder_finds_one():
    tree = ast.parse('x = current_app.config["MFA_LOCK_AFTER"]\ny = config.get("MAIL_SERVER")')
    assert _reads_of_declared_settings(tree) == ["MFA_LOCK_AFTER (line 1)", "MAIL_SERVER (line 2)"]


def test_every_name_the_package_asks_for_is_declared():
    asked = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "setting"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                asked.add(node.args[0].value)
    assert len(asked) >= 25
    assert asked <= set(config.BY_NAME), asked - set(config.BY_NAME)
