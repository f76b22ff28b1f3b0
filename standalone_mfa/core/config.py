"""Configuration: every setting is declared once, in `KEYS` (name, default, what it
accepts, one line of help), read from the defaults, then `config.py` in the instance
folder, then `FLASK_*` environment variables, and read back only through `setting`.

The app refuses to start rather than run with a setting it would misread: a value
outside what its key accepts, a name one typo away from a declared one (a typo must
not weaken the sign-in quietly), or an undeclared name carrying one of our prefixes.
`docs/configuration.md` is generated from `KEYS` (`core.config_doc`)."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import addresses, hostnames, paths
from .crypto import build_fernet, generate_key


class ConfigurationError(RuntimeError):
    """A setting stops the start; the message names it and says what it accepts."""


class UnknownSetting(KeyError):
    """Code asked `setting` for a name `KEYS` does not declare (a bug, not a setting)."""

    def __str__(self) -> str:
        return str(self.args[0])


# --- What a setting accepts -------------------------------------------------------
#
# A value from `config.py` is whatever Python value the file wrote. One from the
# environment arrives as Flask's `from_prefixed_env` leaves it: parsed as JSON when it
# parses (FLASK_MFA_LOCK_AFTER=20 is 20, FLASK_DATABASE_POOL=false is False), else the
# text; `load` keeps the raw text for settings that are text. `_coerce` is the one
# place that turns the remaining text into the type a kind wants.

UNSET = object()  # a default that leaves the key out: the library decides


@dataclass(frozen=True)
class Kind:
    """What a setting accepts: its type (for `_coerce`), the docs' words for it, and a
    check of the coerced value that returns the value to keep or raises Refused."""

    type: str  # "whole", "number", "switch", "text", "list", "sender", "rules"
    describe: str
    check: Callable[[object], object] = field(default=lambda value: value)
    optional: bool = True  # None (unset) is accepted
    bounds: tuple | None = None  # (lowest, highest) for numbers


class Refused(ValueError):
    """Raised by a kind's check: the message says what the setting must be."""


def whole(lowest: int, highest: int) -> Kind:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Refused(f"a whole number from {lowest} to {highest}")
        if not lowest <= value <= highest:
            raise Refused(f"a whole number from {lowest} to {highest}")
        return value

    return Kind("whole", f"whole number, {lowest}–{highest}", check, False, (lowest, highest))


def number(lowest: float, highest: float) -> Kind:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Refused(f"a number from {lowest} to {highest}")
        if not lowest <= value <= highest:
            raise Refused(f"a number from {lowest} to {highest}")
        return value

    return Kind("number", f"number, {lowest}–{highest}", check, False, (lowest, highest))


def switch() -> Kind:
    def check(value):
        if value not in (True, False):  # 0 and 1 too
            raise Refused("true or false (True or False in config.py)")
        return bool(value)

    return Kind("switch", "`True` or `False`", check, False)


def text(
    describe: str = "text",
    *,
    optional: bool = True,
    pattern: str | None = None,
    min_length: int = 1,
    check: Callable[[str], str] | None = None,
    must: str | None = None,
) -> Kind:
    """Text; `pattern` (a full match) or `check` (raising Refused) narrow it down;
    `must` says what it must be when refused."""

    def check_text(value):
        if not isinstance(value, str):
            raise Refused(must or describe)
        if len(value) < min_length:
            short = f"at least {min_length} characters long" if value else describe
            raise Refused(must or short)
        if pattern is not None and not re.fullmatch(pattern, value):
            raise Refused(must or describe)
        return check(value) if check else value

    return Kind("text", describe, check_text, optional)


def choice(*options: str) -> Kind:
    def check(value):
        if value not in options:
            raise Refused("one of " + ", ".join(options))
        return value

    return Kind("text", "one of " + ", ".join(f"`{o}`" for o in options), check, False)


def _coerce(kind: Kind, value):
    """The one place text becomes a kind's type ("20" -> 20, "0.5" -> 0.5, "k1,k2" ->
    ["k1", "k2"]); a value of the right type passes unchanged. Switches take no text:
    FLASK_X=false arrives as JSON's false, and "false" written in config.py is a mistake
    (a non-empty string is true to Python) that must not pass as either."""
    if not isinstance(value, str):
        if kind.type == "text" and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # FLASK_MAIL_PASSWORD=1234 parses as a number
        return value
    stripped = value.strip()
    if kind.type == "whole" and re.fullmatch(r"[0-9]+", stripped):
        return int(stripped)
    if kind.type == "number":
        try:
            return float(stripped) if "." in stripped else int(stripped)
        except ValueError:
            return value
    if kind.type == "list":
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


# --- Kinds with a rule of their own ------------------------------------------------


def _fernet_keys(value):
    if not isinstance(value, list | tuple) or not value:
        raise Refused("a list of Fernet keys, newest first")
    try:
        build_fernet(list(value))
    except (ValueError, TypeError):
        raise Refused(
            "a list of Fernet keys (32 url-safe base64-encoded bytes), newest first"
        ) from None
    return list(value)


def _origins(value):
    """A list of origins, each `scheme://host[:port]` as a browser writes it."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise Refused("a list of origins such as https://auth.example.com")
    found = []
    for item in value:
        if not isinstance(item, str) or not hostnames.is_origin(item):
            raise Refused(
                f"a list of origins such as https://auth.example.com (scheme, host and port "
                f"only, lower case); {item!r} is not one"
            )
        found.append(item)
    return found


def _access_control(value):
    # Parsed and checked by the gateway (web.gateway.init_app, gateway.rules): here,
    # only its shape, so nothing but a dict or JSON text reaches the parser.
    if not isinstance(value, dict | str):
        raise Refused("the gateway's rules, a dict or JSON text")
    return value


APPLICATIONS_HELP = (
    'a list of {"name": …, "url": …} (a list, or JSON text), each name non-empty and '
    "each URL an http(s) address of a host"
)


def _applications(value):
    """The home page's gateway apps: each a name people read and an http(s) URL (the
    host and path the gateway's rules are read for)."""
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise Refused(APPLICATIONS_HELP + "; this is not JSON") from None
    if not isinstance(value, list | tuple):
        raise Refused(APPLICATIONS_HELP)
    found = []
    for number, entry in enumerate(value, start=1):
        if not isinstance(entry, dict) or set(entry) != {"name", "url"}:
            raise Refused(f"{APPLICATIONS_HELP}; entry {number} is not {{name, url}}")
        name, url = entry["name"], entry["url"]
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise Refused(f"{APPLICATIONS_HELP}; entry {number} has no name")
        if not _is_app_url(url):
            raise Refused(f"{APPLICATIONS_HELP}; entry {number}'s URL {url!r} is not one")
        found.append({"name": " ".join(name.split()), "url": url})
    return found


def _is_app_url(url) -> bool:
    if not isinstance(url, str) or not hostnames.is_visible(url):
        return False
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and "@" not in parts.netloc
        and hostnames.is_host_name(parts.hostname or "")
    )


def _issuer(value: str) -> str:
    if ":" in value or not value.strip():
        raise Refused("non-empty and contain no colon")
    return value


def _hash_method(value: str) -> str:
    if value.split(":")[0] not in ("scrypt", "pbkdf2"):
        raise Refused("a Werkzeug password hash method: scrypt or pbkdf2[:sha256[:rounds]]")
    return value


def _sender(value):
    name, address = value if isinstance(value, list | tuple) and len(value) == 2 else ("", value)
    try:
        addresses.normalise(str(address or ""))
        if any(c in str(name) for c in "\r\n\0"):
            raise addresses.BadAddress("the name has a line break")
    except addresses.BadAddress as exc:
        raise Refused(
            "the address notices come from: 'signin@example.com', "
            f"or a pair such as ('Sign-in', 'signin@example.com') ({exc})"
        ) from None
    return value


def _sender_kind() -> Kind:
    return Kind("sender", "an address, or a (name, address) pair", _sender)


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
    if not hostnames.is_host_name(name):
        return "not a domain name (letters, digits and hyphens between dots; xn-- for others)"
    if labels[-1].isdigit():
        return "not a domain name (its last part is a number)"
    return None


def _cookie_domain_kind() -> Kind:
    return Kind("text", "a domain name, such as `example.com`", cookie_domain)


# --- The table --------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    default: object
    kind: Kind
    help: str
    topic: str
    shown: str | None = None  # the default as the docs say it, when repr would not do


KEYS_TOPIC = "Keys"
DATABASE = "Database"
POLICY_TOPIC = "Sign-in policy"
SESSIONS = "Sessions and cookies"
REQUESTS = "Requests and proxies"
GATEWAY = "Gateway"
MAIL = "Mail"
LANGUAGES = "Languages"
MONITORING = "Monitoring"
PASSKEYS = "Passkeys and security keys"
OIDC = "OpenID Connect"
# Each topic, in the docs' order, with the sentence that opens its section (links
# from the repository's root; the page in docs/ drops the `docs/`).
TOPICS = {
    KEYS_TOPIC: "Required outside tests; `make run` writes both into `instance/config.py`.",
    POLICY_TOPIC: "The numbers the sign-in's rules depend on "
    "([administering: the policy](docs/administering.md)).",
    SESSIONS: "The portal's sessions and the cookies that carry them.",
    GATEWAY: "For [protecting other apps](docs/gateway/index.md).",
    OIDC: "The portal as an [OpenID provider](docs/oidc/index.md).",
    PASSKEYS: "WebAuthn's relying party ([passkeys and security keys](docs/passkeys.md)); "
    "checked at start.",
    REQUESTS: "What the app believes of a request, behind [a proxy](docs/deploy.md).",
    DATABASE: "SQLite by default; PostgreSQL with the `postgres` extra.",
    MAIL: "For the [email notices](docs/notices.md): Flask-Mail's keys.",
    LANGUAGES: "Flask-Babel's keys, for the [languages](docs/languages.md).",
    MONITORING: "For [monitoring](docs/operating/monitoring.md).",
}

PROXY_FIX_KEYS = ("PROXY_FIX_X_FOR", "PROXY_FIX_X_PROTO", "PROXY_FIX_X_HOST", "PROXY_FIX_X_PREFIX")
_PROXY_HEADERS = {
    "PROXY_FIX_X_FOR": "`X-Forwarded-For` (the client's address)",
    "PROXY_FIX_X_PROTO": "`X-Forwarded-Proto` (https: Secure cookies, HSTS)",
    "PROXY_FIX_X_HOST": "`X-Forwarded-Host`",
    "PROXY_FIX_X_PREFIX": "`X-Forwarded-Prefix` (the app under a path such as `/mfa-app/`)",
}

KEYS: tuple[Key, ...] = (
    # Keys
    Key(
        "SECRET_KEY",
        None,
        text("random text", optional=False),
        "Signs CSRF tokens. `make run` (or `python -m standalone_mfa.instance`) writes one.",
        KEYS_TOPIC,
        shown="required",
    ),
    Key(
        "MFA_ENCRYPTION_KEYS",
        None,
        Kind("list", "list of Fernet keys (JSON list, or comma-separated)", _fernet_keys, False),
        "Encrypt the TOTP secrets, newest first. To rotate: put a new key first, run "
        "`mfa rotate-keys`, then drop the old one.",
        KEYS_TOPIC,
        shown="required",
    ),
    # Sign-in policy: every number a rule of the sign-in depends on.
    Key("MFA_ISSUER", "Standalone MFA", text("text without a colon", check=_issuer),
        "The name authenticator apps show beside the account (no colon).", POLICY_TOPIC),
    Key("MFA_TOTP_WINDOW", 1, whole(0, 2),
        "Time steps accepted either side of now.", POLICY_TOPIC),
    Key("MFA_BACKOFF_AFTER", 5, whole(1, 20),
        "Wrong codes in a row after which each try waits (and a pending sign-in ends).",
        POLICY_TOPIC),
    Key("MFA_LOCK_AFTER", 50, whole(2, 1000),
        "Wrong codes in a row after which only an administrator can help "
        "(more than MFA_BACKOFF_AFTER).", POLICY_TOPIC),
    Key("PASSWORD_BACKOFF_AFTER", 10, whole(1, 100),
        "Wrong passwords in a row (per username, known or not) after which each try waits; "
        "no hard lock: anyone could trigger it.",
        POLICY_TOPIC),
    Key("PASSWORD_IP_BACKOFF_AFTER", 30, whole(1, 100000),
        "Password attempts from one client address (an IPv6 /64) in an hour, from untrusted "
        "browsers, after which each try from it waits; behind a NAT or proxy, set "
        "PROXY_FIX_X_FOR.", POLICY_TOPIC),
    Key("TRUSTED_BROWSER_DAYS", 90, whole(1, 400),
        "Days a browser that completed a sign-in keeps its own wrong-password counter.",
        POLICY_TOPIC),
    Key("BACKOFF_MAX_SECONDS", 15 * 60, whole(1, 24 * 3600),
        "The longest wait either back-off asks for, in seconds.", POLICY_TOPIC),
    Key("MFA_SETUP_TIMEOUT", 600, whole(30, 24 * 3600),
        "Seconds a pending authenticator set-up lives.", POLICY_TOPIC),
    Key("MFA_VERIFY_TIMEOUT", 300, whole(30, 3600),
        "Seconds a pending code step lives.", POLICY_TOPIC),
    Key("ADMIN_STEP_UP_SECONDS", 300, whole(1, 3600),
        "Seconds an administrator's step-up (a fresh code, or the password) counts.",
        POLICY_TOPIC),
    Key("PASSWORD_HASH_METHOD", "scrypt",
        text("`scrypt`, or `pbkdf2[:sha256[:rounds]]`", check=_hash_method, optional=False),
        "Werkzeug's hash method for new passwords.", POLICY_TOPIC),
    # Sessions and cookies
    Key("SESSION_IDLE_TIMEOUT", 30 * 60, whole(60, 30 * 24 * 3600),
        "Seconds a session lives unused.", SESSIONS),
    Key("SESSION_ABSOLUTE_TIMEOUT", 12 * 60 * 60, whole(60, 365 * 24 * 3600),
        "Seconds a session lives at most.", SESSIONS),
    Key("SESSION_COOKIE_NAME", "smfa_session",
        text("letters, digits, `_` and `-`", optional=False, pattern=r"[A-Za-z0-9_-]{1,64}"),
        "The session cookie's name; over HTTPS it gets the `__Host-` prefix (`__Secure-` "
        "under a path prefix or with SESSION_COOKIE_DOMAIN).",
        SESSIONS),
    Key("SESSION_COOKIE_SECURE", False, switch(),
        "Secure cookies even on a request that looks like plain HTTP (over HTTPS, or "
        "behind a proxy trusted for `X-Forwarded-Proto`, they are Secure anyway).",
        SESSIONS),
    Key("SESSION_COOKIE_HTTPONLY", True, switch(),
        "The app's cookies are HttpOnly: no script reads them.", SESSIONS),
    Key("SESSION_COOKIE_SAMESITE", "Lax", choice("Lax", "Strict"),
        "The cookies' SameSite attribute.", SESSIONS),
    Key("SESSION_COOKIE_DOMAIN", None, _cookie_domain_kind(),
        "The parent domain the sign-in is shared with (`example.com` for a portal at "
        "`auth.example.com` and apps on other subdomains behind the gateway); the portal's "
        "host must be it or under it. Unset: every cookie is host-only.", SESSIONS,
        shown="unset"),
    Key("HSTS_INCLUDE_SUBDOMAINS", True, switch(),
        "Send `includeSubDomains` in HSTS (over HTTPS only); False for a portal whose own "
        "subdomains still need plain HTTP.", SESSIONS),
    Key("WTF_CSRF_TIME_LIMIT", 3600, whole(60, 24 * 3600),
        "Seconds a form's CSRF token stays valid.", SESSIONS),
    # Flask-WTF's HTTPS-only Referer check cannot pass: every page sends
    # `Referrer-Policy: no-referrer`. What it guards against (a session planted over
    # plain HTTP) the `__Host-`/`__Secure-` cookie prefixes already stop.
    Key("WTF_CSRF_SSL_STRICT", False, switch(),
        "Flask-WTF's Referer check over HTTPS; leave False: pages send no Referer "
        "(`Referrer-Policy: no-referrer`) and the cookie prefixes do its job.", SESSIONS),
    # The gateway (docs: protecting other apps)
    Key("ACCESS_CONTROL", None, Kind("rules", "the gateway's rules, a dict or JSON text",
                                     _access_control),
        "The gateway's rules, checked at start; unset: every check refused.", GATEWAY,
        shown="unset"),
    Key("GATEWAY_PORTAL_URL", None, text("URL"),
        "The portal's public URL (`https://auth.example.com`), where the gateway sends "
        "browsers to sign in; required with ACCESS_CONTROL.", GATEWAY, shown="unset"),
    Key("APPLICATIONS", None, Kind("applications", 'list of `{"name": …, "url": …}` '
                                   "(JSON text, or a list in config.py)", _applications),
        "The apps behind the gateway that the home page lists "
        '(`[{"name": "Wiki", "url": "https://wiki.example.com/"}]`), each shown only to '
        "the people ACCESS_CONTROL does not deny it (OpenID clients: by their subjects).",
        GATEWAY, shown="unset"),
    # OpenID Connect (docs/oidc/index.md)
    Key("OIDC_ISSUER", None, text("URL"),
        "The OpenID provider's issuer: the portal's public https URL as clients reach it "
        "(no query, no fragment, no trailing slash). Unset: GATEWAY_PORTAL_URL; with "
        "neither, the OpenID endpoints answer 404.", OIDC,
        shown="GATEWAY_PORTAL_URL"),
    Key("OIDC_ACCESS_TOKEN_SECONDS", 3600, whole(60, 24 * 3600),
        "Seconds an access token lives.", OIDC),
    Key("OIDC_ID_TOKEN_SECONDS", 3600, whole(60, 24 * 3600),
        "Seconds an ID token is valid (its `exp`).", OIDC),
    Key("OIDC_REFRESH_TOKEN_SECONDS", 30 * 24 * 3600, whole(3600, 365 * 24 * 3600),
        "Seconds a refresh token lives (each use gives a new one, for as long again), "
        "for clients registered `--offline` that asked for `offline_access`.", OIDC),
    # Passkeys and security keys (factors.webauthn; checked at start)
    Key("WEBAUTHN_RP_ID", None, text("a domain name"),
        "The relying party ID every key is made for: the portal's host or a parent domain "
        "of it (`example.com` for `auth.example.com`), never an IP address. Changing it "
        "later orphans every key.", PASSKEYS,
        shown="the host of GATEWAY_PORTAL_URL, else `localhost`"),
    Key("WEBAUTHN_ORIGINS", None, Kind("list", "list of origins (JSON list, or "
                                        "comma-separated)", _origins),
        "The exact origins (scheme, host and port) a ceremony may come from; each one's "
        "host is the RP ID or under it.", PASSKEYS,
        shown="the origin of GATEWAY_PORTAL_URL, else `http://localhost:5000`"),
    Key("WEBAUTHN_RP_NAME", None, text("text"),
        "The name a browser shows when it asks for a key.", PASSKEYS, shown="MFA_ISSUER"),
    Key("WEBAUTHN_TIMEOUT", 300, whole(30, 900),
        "Seconds a ceremony (its single-use challenge) lives.", PASSKEYS),
    # Requests and proxies
    Key("MAX_CONTENT_LENGTH", 64 * 1024, whole(1024, 16 * 1024 * 1024),
        "Largest request body in bytes; a larger one gets 413.", REQUESTS),
    *(
        Key(name, 0, whole(0, 10),
            f"How many proxies in front of the app set {header}; 0 ignores the header. "
            "Never more than there are: a client could then choose its own.",
            REQUESTS)
        for name, header in _PROXY_HEADERS.items()
    ),
    # Database
    Key("DATABASE_URL", None, text("a database URL"),
        "A Peewee `playhouse.db_url` URL such as `postgresql://user@host/db` (the `postgres` "
        "extra). Unset: a SQLite file in the instance folder.", DATABASE,
        shown="`sqlite:///<instance>/standalone_mfa.sqlite3`"),
    Key("DATABASE_TIMEOUT", 10, number(0.1, 600),
        "Seconds SQLite waits for a lock, and a request for a pooled connection, before "
        "answering 503.", DATABASE),
    Key("DATABASE_POOL", True, switch(),
        "Keep connections open between requests (Peewee's `playhouse.pool`), lent to one "
        "request at a time; False: a new one for every request.",
        DATABASE),
    Key("DATABASE_POOL_SIZE", 8, whole(1, 1000),
        "Most connections one process holds: at least gunicorn's `--threads`; workers × "
        "this must stay under PostgreSQL's `max_connections`.", DATABASE),
    # Email notices (Flask-Mail's keys)
    Key("MAIL_SERVER", None, text("a host name"),
        "The SMTP server's host name. Unset: no notice is queued or sent.", MAIL,
        shown="unset"),
    Key("MAIL_PORT", 25, whole(1, 65535),
        "Its port (587 with MAIL_USE_TLS, 465 with MAIL_USE_SSL).", MAIL),
    Key("MAIL_USE_TLS", False, switch(), "STARTTLS after connecting.", MAIL),
    Key("MAIL_USE_SSL", False, switch(), "TLS from the first byte.", MAIL),
    Key("MAIL_USERNAME", None, text(), "SMTP login, if the server wants one.", MAIL,
        shown="unset"),
    Key("MAIL_PASSWORD", None, text(), "Its password.", MAIL, shown="unset"),
    Key("MAIL_DEFAULT_SENDER", None, _sender_kind(),
        "The address notices come from (`signin@example.com`), or a (name, address) pair; "
        "required with MAIL_SERVER.",
        MAIL, shown="unset"),
    Key("MAIL_TIMEOUT", 10, number(1, 120),
        "Seconds one SMTP conversation may take before it is retried later.", MAIL),
    Key("MAIL_SUPPRESS_SEND", UNSET, switch(),
        "Flask-Mail's: make every mail but send none (a staging portal).", MAIL,
        shown="`False` (`True` under TESTING)"),
    # Languages (Flask-Babel's keys)
    Key("BABEL_DEFAULT_LOCALE", "en", choice("en", "fr", "de", "es"),
        "The language of a page when neither the user, the `lang` cookie nor the browser "
        "names one we ship, and of mails to users who chose none.", LANGUAGES),
    Key("BABEL_TRANSLATION_DIRECTORIES", None, text("a folder"),
        "Where the catalogues are. Unset: the ones shipped in the package.", LANGUAGES,
        shown="unset"),
    # Monitoring
    Key("METRICS_TOKEN", None, text("text of 32 characters or more", min_length=32),
        "The bearer token Prometheus sends to `GET /metrics`, at least 32 characters "
        "(`python -c 'import secrets; print(secrets.token_urlsafe(32))'`); unset: no "
        "`/metrics` (404).", MONITORING, shown="unset"),
)  # fmt: skip

BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}
DEFAULTS = {key.name: key.default for key in KEYS if key.default is not UNSET}

# Undeclared names with these prefixes are refused: they can only be a mistake (one of
# ours misspelt beyond a typo, or a library's we do not read and would ignore).
OUR_PREFIXES = (
    "MFA_", "GATEWAY_", "WEBAUTHN_", "OIDC_", "SESSION_", "MAIL_", "METRICS_", "DATABASE_",
    "PASSWORD_", "PROXY_FIX_", "ADMIN_", "BACKOFF_", "TRUSTED_BROWSER", "HSTS_", "WTF_CSRF_",
    "BABEL_", "ACCESS_",
)  # fmt: skip


# --- Names ------------------------------------------------------------------------


def distance(a: str, b: str) -> int:
    """Edits (a letter added, dropped, changed, or two side by side swapped) from a to b."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            best = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, previous2[j - 2] + 1)
            current.append(best)
        previous2, previous = previous, current
    return previous[-1]


def typo_limit(name: str) -> int:
    """How many edits still count as a typo of a declared name: 2, or 1 for a short name
    (the shortest declared names are 9 letters; two edits cannot turn one of Flask's or
    its extensions' names into one of ours: tests/core/test_config_names.py checks)."""
    return 2 if len(name) >= 8 else 1


def near(name: str, known: Iterable[str] | None = None) -> list[str]:
    """The declared names `name` is a typo of (case aside), the closest first."""
    upper = name.upper()
    scored = sorted((distance(upper, candidate), candidate) for candidate in (known or BY_NAME))
    if not scored or scored[0][0] > typo_limit(upper):
        return []
    return [candidate for score, candidate in scored if score == scored[0][0]]


def check_names(names: Iterable[str], where: str, spelled: str = "{}") -> None:
    """Refuse a name that is a typo of a declared one, or undeclared with our prefix;
    let anything else (Flask's own settings, a library's) through. `spelled` shows a
    name as the operator wrote it (`FLASK_{}` for the environment)."""
    for name in names:
        if name in BY_NAME:
            continue
        shown = spelled.format(name)
        close = near(name)
        if close:
            raise ConfigurationError(
                f"Unknown setting {shown}: did you mean "
                + " or ".join(spelled.format(c) for c in close)
                + f"? ({where})"
            )
        if name.upper().startswith(OUR_PREFIXES):
            raise ConfigurationError(
                f"Unknown setting {shown}: not a setting of Standalone MFA ({where}; "
                "docs/configuration.md lists them)."
            )


def setting(name: str, app=None):
    """The value of the declared setting `name` in `app` (else the current app), as
    `finish` checked it. An undeclared name raises UnknownSetting: a bug to fix, not
    a value to guess."""
    if name not in BY_NAME:
        close = near(name)
        hint = f": did you mean {' or '.join(close)}?" if close else ""
        raise UnknownSetting(f"{name} is not a declared setting (core.config.KEYS){hint}")
    if app is None:
        from flask import current_app

        app = current_app
    return app.config.get(name)


# --- Loading and checking ---------------------------------------------------------

MISSING_KEYS_HELP = (
    "{names} not set. Run `make run` once, or `python -m standalone_mfa.instance`: "
    "either writes {config_file} with new keys. Or write them there yourself:\n"
    "    SECRET_KEY = \"<python -c 'import secrets; print(secrets.token_hex(32))'>\"\n"
    '    MFA_ENCRYPTION_KEYS = ["<python -m standalone_mfa.instance --print-key>"]\n'
    "or set FLASK_SECRET_KEY and FLASK_MFA_ENCRYPTION_KEYS (a JSON list) in the environment."
)
ENV_PREFIX = "FLASK_"


def load(config, test_config: dict | None = None) -> None:
    """Read the sources in order: the defaults, then `config.py` in the instance folder
    and `FLASK_*` environment variables (or, for tests, `test_config` alone). Each
    source's names are checked before any of its values is taken."""
    from flask import Config

    config.from_mapping(DEFAULTS)
    if test_config is not None:
        check_names(test_config, "in the test configuration")
        config.from_mapping(test_config)
        return
    from_file = Config(config.root_path)
    path = os.path.join(config.root_path, "config.py")
    from_file.from_pyfile(path, silent=True)
    check_names(from_file, f"in {path}")
    config.update(from_file)
    _from_environment(config, os.environ)


def _from_environment(config, environ: Mapping[str, str]) -> None:
    """`FLASK_*` variables as Flask reads them (JSON when it parses, `__` for nesting),
    but text settings keep their text: FLASK_MAIL_PASSWORD=0123 stays "0123"."""
    names = {
        name.removeprefix(ENV_PREFIX).split("__")[0]
        for name in environ
        if name.startswith(ENV_PREFIX)
    }
    check_names(sorted(names), "in the environment", spelled=ENV_PREFIX + "{}")
    config.from_prefixed_env(ENV_PREFIX.removesuffix("_"))
    for name in names:
        key = BY_NAME.get(name)
        raw = environ.get(ENV_PREFIX + name)
        is_text = key is not None and key.kind.type in ("text", "sender")
        if is_text and raw is not None and not raw.strip().startswith(("[", "{", '"')):
            config[name] = raw


def proxy_hops(instance_path: str | None = None) -> dict[str, int]:
    """The `PROXY_FIX_*` hop counts the app will use, from the same sources, checked the
    same way, without building the app (no keys, no database): for `gunicorn.conf.py`."""
    from flask import Flask

    # A bare Flask of the same name finds the same instance folder as `create_app`.
    bare = Flask(
        "standalone_mfa",
        instance_path=paths.instance_path(instance_path),
        instance_relative_config=True,
    )
    load(bare.config)
    return {name: checked(BY_NAME[name], bare.config.get(name)) for name in PROXY_FIX_KEYS}


def checked(key: Key, value):
    """`value` for `key`, coerced from environment text and checked against its kind;
    ConfigurationError naming the setting if it is refused."""
    value = _coerce(key.kind, value)
    if key.kind.optional and value == "":
        value = None  # FLASK_METRICS_TOKEN= (empty) unsets, as leaving it out does
    if value is UNSET or value is None and key.kind.optional:
        return value
    try:
        return key.kind.check(value)
    except Refused as exc:
        raise ConfigurationError(f"{key.name} must be {exc} ({key.help.rstrip('.')}).") from None


def finish(app) -> None:
    """Check every declared setting, fill derived values, and refuse settings that
    would be unsafe or unusable together."""
    config = app.config
    keys = _coerce(BY_NAME["MFA_ENCRYPTION_KEYS"].kind, config.get("MFA_ENCRYPTION_KEYS"))
    if app.testing:
        config["SECRET_KEY"] = config.get("SECRET_KEY") or secrets.token_hex(32)
        keys = keys or [generate_key()]
    config["MFA_ENCRYPTION_KEYS"] = keys
    missing = [name for name in ("SECRET_KEY", "MFA_ENCRYPTION_KEYS") if not config.get(name)]
    if missing:
        raise ConfigurationError(
            MISSING_KEYS_HELP.format(
                names=" and ".join(missing) + (" is" if len(missing) == 1 else " are"),
                config_file=os.path.join(app.instance_path, "config.py"),
            )
        )
    for key in KEYS:
        if key.name in config:
            config[key.name] = checked(key, config[key.name])
    app.extensions["standalone_mfa.fernet"] = build_fernet(config["MFA_ENCRYPTION_KEYS"])
    if not config["DATABASE_URL"]:
        config["DATABASE_URL"] = "sqlite:///" + str(
            Path(app.instance_path) / "standalone_mfa.sqlite3"
        )
    if config["MFA_LOCK_AFTER"] <= config["MFA_BACKOFF_AFTER"]:
        raise ConfigurationError("MFA_LOCK_AFTER must be more than MFA_BACKOFF_AFTER.")
    if config["MAIL_SERVER"] and not config["MAIL_DEFAULT_SENDER"]:
        raise ConfigurationError(
            "MAIL_DEFAULT_SENDER must be set with MAIL_SERVER: the address notices come "
            "from, such as 'signin@example.com'."
        )
    if config["MAIL_USE_TLS"] and config["MAIL_USE_SSL"]:
        raise ConfigurationError(
            "MAIL_USE_TLS and MAIL_USE_SSL: set one (STARTTLS, usually port 587, or TLS "
            "from the first byte, usually 465), not both."
        )
