"""Configuration: defaults here, then `instance/config.py`, then `FLASK_*` environment
variables. The app refuses to start without its keys rather than run with weak ones."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path

from . import addresses
from .crypto import build_fernet, generate_key

PROXY_FIX_KEYS = ("PROXY_FIX_X_FOR", "PROXY_FIX_X_PROTO", "PROXY_FIX_X_HOST", "PROXY_FIX_X_PREFIX")

DEFAULTS = {
    "SECRET_KEY": None,
    "MFA_ENCRYPTION_KEYS": None,
    "DATABASE_URL": None,  # None: a SQLite file in the instance folder
    "DATABASE_TIMEOUT": 10,  # seconds SQLite waits for a lock before answering 503
    # Connection pool
    "DATABASE_POOL": True,  # keep connections open between requests (False: one each)
    "DATABASE_POOL_SIZE": 8,  # most connections per process; at least gunicorn's --threads
    "MFA_ISSUER": "Standalone MFA",
    # The policy numbers (bounds and meaning in POLICY below).
    "MFA_TOTP_WINDOW": 1,
    "MFA_BACKOFF_AFTER": 5,
    "MFA_LOCK_AFTER": 50,
    "PASSWORD_BACKOFF_AFTER": 10,
    "PASSWORD_IP_BACKOFF_AFTER": 30,  # per client address and hour, untrusted browsers
    "TRUSTED_BROWSER_DAYS": 90,  # how long a browser that signed in keeps its own counter
    "BACKOFF_MAX_SECONDS": 15 * 60,
    "MFA_SETUP_TIMEOUT": 600,  # seconds a pending set-up lives
    "MFA_VERIFY_TIMEOUT": 300,  # seconds a pending code step lives
    "SESSION_IDLE_TIMEOUT": 30 * 60,
    "SESSION_ABSOLUTE_TIMEOUT": 12 * 60 * 60,
    "SESSION_COOKIE_NAME": "smfa_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,
    # The parent domain the session cookie is shared with, e.g. "example.com": one
    # sign-in on the portal then opens every app on its subdomains behind the gateway.
    # None: the cookie is host-only. Checked and normalised by `finish`.
    "SESSION_COOKIE_DOMAIN": None,
    # HSTS for the portal's own subdomains too (includeSubDomains); False drops it.
    "HSTS_INCLUDE_SUBDOMAINS": True,
    "PASSWORD_HASH_METHOD": "scrypt",
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "WTF_CSRF_TIME_LIMIT": 3600,
    "ADMIN_STEP_UP_SECONDS": 300,  # how long an admin's re-entered code or password counts
    "METRICS_TOKEN": None,  # the bearer token of GET /metrics; None: no /metrics (404)
    # Notices by mail (docs/notices.md): Flask-Mail's keys. No MAIL_SERVER, no
    # mail: nothing is queued. MAIL_DEFAULT_SENDER (an address) is then required.
    "MAIL_SERVER": None,
    "MAIL_PORT": 25,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_DEFAULT_SENDER": None,
    "MAIL_TIMEOUT": 10,  # seconds one SMTP conversation may take before it is retried
    # The gateway (docs/gateway/index.md): the rules, as a dict or JSON (None: no
    # rules, every check refused), and the portal's public URL, where browsers sign in.
    "ACCESS_CONTROL": None,
    "GATEWAY_PORTAL_URL": None,
    # Flask-WTF's HTTPS-only Referer check cannot pass: every page sends
    # `Referrer-Policy: no-referrer`, so browsers send no Referer. What it guards
    # against (a session planted over plain HTTP) the cookie prefixes already stop:
    # over HTTPS the session cookie is `__Host-`/`__Secure-` (see `cookies`), and the
    # CSRF secret lives in that server-side session.
    "WTF_CSRF_SSL_STRICT": False,
    # How many proxies in front of the app set each X-Forwarded-* header (Werkzeug's
    # ProxyFix); 0 = the header is ignored. Never set one without such a proxy: any
    # client could then choose its own IP address, scheme, host or path prefix.
    **{name: 0 for name in PROXY_FIX_KEYS},
}

MISSING_KEYS_HELP = (
    "{names} not set. Run `make run` once, or `python -m standalone_mfa.instance`: "
    "either writes {config_file} with new keys. Or write them there yourself:\n"
    "    SECRET_KEY = \"<python -c 'import secrets; print(secrets.token_hex(32))'>\"\n"
    '    MFA_ENCRYPTION_KEYS = ["<python -m standalone_mfa.instance --print-key>"]\n'
    "or set FLASK_SECRET_KEY and FLASK_MFA_ENCRYPTION_KEYS (a JSON list) in the environment."
)


# Every policy number: (lowest, highest, what it means). `finish` refuses a value
# outside its bounds at start, so a typo cannot weaken the sign-in quietly.
POLICY = {
    "MFA_TOTP_WINDOW": (0, 2, "time steps accepted either side of now"),
    "MFA_BACKOFF_AFTER": (
        1,
        20,
        "wrong codes in a row after which each try waits (and a pending sign-in ends)",
    ),
    "MFA_LOCK_AFTER": (2, 1000, "wrong codes in a row after which only an administrator can help"),
    "PASSWORD_BACKOFF_AFTER": (1, 100, "wrong passwords in a row after which each try waits"),
    "PASSWORD_IP_BACKOFF_AFTER": (
        1,
        100000,
        "password attempts from one client address in an hour after which each try waits",
    ),
    "TRUSTED_BROWSER_DAYS": (
        1,
        400,
        "days a browser that completed a sign-in keeps its own wrong-password counter",
    ),
    "BACKOFF_MAX_SECONDS": (1, 24 * 3600, "the longest wait the back-off asks for"),
    "MFA_SETUP_TIMEOUT": (30, 24 * 3600, "seconds a pending set-up lives"),
    "MFA_VERIFY_TIMEOUT": (30, 3600, "seconds a pending code step lives"),
    "SESSION_IDLE_TIMEOUT": (60, 30 * 24 * 3600, "seconds a session lives unused"),
    "SESSION_ABSOLUTE_TIMEOUT": (60, 365 * 24 * 3600, "seconds a session lives at most"),
    "ADMIN_STEP_UP_SECONDS": (1, 3600, "seconds an administrator's step-up counts"),
}


class ConfigurationError(RuntimeError):
    pass


def load(config, test_config: dict | None = None) -> None:
    """Read the sources in order: the defaults, then `config.py` in the instance folder
    and `FLASK_*` environment variables (or, for tests, `test_config` alone)."""
    config.from_mapping(DEFAULTS)
    if test_config is None:
        config.from_pyfile("config.py", silent=True)
        config.from_prefixed_env()
    else:
        config.from_mapping(test_config)


def proxy_hops(instance_path: str | None = None) -> dict[str, int]:
    """The `PROXY_FIX_*` hop counts the app will use, from the same sources, checked the
    same way, without building the app (no keys, no database): for `gunicorn.conf.py`."""
    from flask import Flask

    # A bare Flask of the same name finds the same instance folder as `create_app`.
    bare = Flask("standalone_mfa", instance_path=instance_path, instance_relative_config=True)
    load(bare.config)
    return {name: _hop_count(name, bare.config.get(name)) for name in PROXY_FIX_KEYS}


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
    for name, (lowest, highest, meaning) in POLICY.items():
        config[name] = _policy_number(name, config.get(name), lowest, highest, meaning)
    if config["MFA_LOCK_AFTER"] <= config["MFA_BACKOFF_AFTER"]:
        raise ConfigurationError("MFA_LOCK_AFTER must be more than MFA_BACKOFF_AFTER.")
    if ":" in config["MFA_ISSUER"] or not config["MFA_ISSUER"].strip():
        raise ConfigurationError("MFA_ISSUER must be non-empty and contain no colon.")
    for name in PROXY_FIX_KEYS:
        config[name] = _hop_count(name, config.get(name))
    _check_pool(config)
    _check_mail(config)
    config["SESSION_COOKIE_DOMAIN"] = cookie_domain(config.get("SESSION_COOKIE_DOMAIN"))
    config["HSTS_INCLUDE_SUBDOMAINS"] = _switch(
        "HSTS_INCLUDE_SUBDOMAINS", config.get("HSTS_INCLUDE_SUBDOMAINS")
    )


def _check_pool(config) -> None:
    # From the environment, FLASK_DATABASE_POOL=false and FLASK_DATABASE_POOL_SIZE=4
    # arrive parsed as JSON; 0 and 1 are accepted for the switch too.
    pool = config["DATABASE_POOL"]
    if pool not in (True, False):
        raise ConfigurationError("DATABASE_POOL must be true or false.")
    config["DATABASE_POOL"] = bool(pool)
    size = config["DATABASE_POOL_SIZE"]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1000:
        raise ConfigurationError("DATABASE_POOL_SIZE must be a number of connections (1-1000).")


def _switch(name: str, value) -> bool:
    # From the environment, FLASK_HSTS_INCLUDE_SUBDOMAINS=false arrives as JSON.
    if value not in (True, False):
        raise ConfigurationError(f"{name} must be true or false.")
    return bool(value)


_DOMAIN_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
COOKIE_DOMAIN_HELP = (
    "SESSION_COOKIE_DOMAIN must be a domain name that the portal's host is or is under, "
    "such as example.com for https://auth.example.com; {value!r} is {problem}."
)


def cookie_domain(value) -> str | None:
    """SESSION_COOKIE_DOMAIN as browsers compare it (lower case, no leading dot), or
    None when unset. Refused: what a browser would not store a shared cookie for, or
    what is not a domain at all (an address, a URL, a top-level domain alone)."""
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, str):
        problem = "not text"
    else:
        name = value.strip().lower().removeprefix(".")
        problem = _domain_problem(name)
        if problem is None:
            return name
    raise ConfigurationError(COOKIE_DOMAIN_HELP.format(value=value, problem=problem))


def _domain_problem(name: str) -> str | None:
    try:
        ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    else:
        return "an IP address (a cookie for an address is only ever host-only)"
    if any(mark in name for mark in (":", "/", "@", "?", "#")):
        return "not a bare domain (no scheme, port or path)"
    labels = name.split(".")
    if len(labels) < 2:
        return "a top-level domain alone, or a single name (browsers share no cookie for it)"
    if len(name) > 253 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return "not a domain name (letters, digits and hyphens between dots; xn-- for others)"
    if labels[-1].isdigit():
        return "not a domain name (its last part is a number)"
    return None


def _policy_number(name: str, value, lowest: int, highest: int, meaning: str) -> int:
    # From the environment, FLASK_MFA_LOCK_AFTER=20 arrives as an int; allow "20" too.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise ConfigurationError(
            f"{name} must be a whole number from {lowest} to {highest} ({meaning})."
        )
    return value


def _hop_count(name: str, value) -> int:
    # From the environment, FLASK_PROXY_FIX_X_FOR=1 arrives as an int; allow "1" too.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"{name} must be a number of proxies (0 = off, 1 = one proxy in front)."
        )
    return value


def _check_mail(config) -> None:
    """With MAIL_SERVER set, notices need a valid sender address and a sane timeout."""
    if not config.get("MAIL_SERVER"):
        return
    sender = config.get("MAIL_DEFAULT_SENDER")
    name, address = (
        sender if isinstance(sender, list | tuple) and len(sender) == 2 else ("", sender)
    )
    try:
        addresses.normalise(str(address or ""))
        if any(c in str(name) for c in "\r\n\0"):
            raise addresses.BadAddress("the name has a line break")
    except addresses.BadAddress as exc:
        raise ConfigurationError(
            "MAIL_DEFAULT_SENDER must be the address notices come from: 'signin@example.com', "
            f"or a pair such as ('Sign-in', 'signin@example.com') ({exc})."
        ) from None
    timeout = config.get("MAIL_TIMEOUT")
    if not isinstance(timeout, int | float) or not 1 <= timeout <= 120:
        raise ConfigurationError("MAIL_TIMEOUT must be 1 to 120 seconds.")
