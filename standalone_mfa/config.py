"""Configuration: defaults here, then `instance/config.py`, then `FLASK_*` environment
variables. The app refuses to start without its keys rather than run with weak ones."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .crypto import build_fernet, generate_key

DEFAULTS = {
    "SECRET_KEY": None,
    "MFA_ENCRYPTION_KEYS": None,
    "DATABASE_URL": None,  # None: a SQLite file in the instance folder
    "DATABASE_TIMEOUT": 10,  # seconds SQLite waits for a lock before answering 503
    "MFA_ISSUER": "Standalone MFA",
    "MFA_TOTP_WINDOW": 1,  # steps accepted either side of now (0-2)
    "MFA_SETUP_TIMEOUT": 600,  # seconds a pending set-up lives
    "MFA_VERIFY_TIMEOUT": 300,  # seconds a pending code step lives
    "SESSION_IDLE_TIMEOUT": 30 * 60,
    "SESSION_ABSOLUTE_TIMEOUT": 12 * 60 * 60,
    "SESSION_COOKIE_NAME": "smfa_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    "PASSWORD_HASH_METHOD": "scrypt",
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "WTF_CSRF_TIME_LIMIT": 3600,
    # Flask-WTF's HTTPS-only Referer check would refuse every form: our Referrer-Policy
    # (no-referrer) means browsers send no Referer. The CSRF token (kept server-side)
    # and the SameSite, __Host- session cookie do that job.
    "WTF_CSRF_SSL_STRICT": False,
}

MISSING_KEYS_HELP = (
    "{names} not set. Run `make run` once, or `python -m standalone_mfa.instance`: "
    "either writes {config_file} with new keys. Or write them there yourself:\n"
    "    SECRET_KEY = \"<python -c 'import secrets; print(secrets.token_hex(32))'>\"\n"
    '    MFA_ENCRYPTION_KEYS = ["<python -m standalone_mfa.instance --print-key>"]\n'
    "or set FLASK_SECRET_KEY and FLASK_MFA_ENCRYPTION_KEYS (a JSON list) in the environment."
)


class ConfigurationError(RuntimeError):
    pass


def finish(app) -> None:
    """Fill derived values and refuse settings that would be unsafe or unusable."""
    config = app.config
    keys = config.get("MFA_ENCRYPTION_KEYS")
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    if app.testing:
        config["SECRET_KEY"] = config.get("SECRET_KEY") or secrets.token_hex(32)
        keys = keys or [generate_key()]
    missing = [
        n
        for n, v in (("SECRET_KEY", config.get("SECRET_KEY")), ("MFA_ENCRYPTION_KEYS", keys))
        if not v
    ]
    if missing:
        raise ConfigurationError(
            MISSING_KEYS_HELP.format(
                names=" and ".join(missing) + (" is" if len(missing) == 1 else " are"),
                config_file=os.path.join(app.instance_path, "config.py"),
            )
        )
    try:
        app.extensions["standalone_mfa.fernet"] = build_fernet(list(keys))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            "MFA_ENCRYPTION_KEYS must be a list of Fernet keys (32 url-safe base64-encoded bytes)."
        ) from exc
    config["MFA_ENCRYPTION_KEYS"] = list(keys)
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = "sqlite:///" + str(
            Path(app.instance_path) / "standalone_mfa.sqlite3"
        )
    window = config["MFA_TOTP_WINDOW"]
    if not isinstance(window, int) or not 0 <= window <= 2:
        raise ConfigurationError("MFA_TOTP_WINDOW must be 0, 1 or 2.")
    if ":" in config["MFA_ISSUER"] or not config["MFA_ISSUER"].strip():
        raise ConfigurationError("MFA_ISSUER must be non-empty and contain no colon.")
    # A Secure cookie on a site without a path prefix can use the __Host- prefix, which
    # browsers only accept from HTTPS, for this host, on path /.
    name = config["SESSION_COOKIE_NAME"]
    at_root = config.get("APPLICATION_ROOT", "/") == "/"
    if config["SESSION_COOKIE_SECURE"] and at_root and not name.startswith("__Host-"):
        config["SESSION_COOKIE_NAME"] = "__Host-" + name
