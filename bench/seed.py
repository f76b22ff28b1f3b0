"""Filling the benchmark's database: a fresh schema, N users with confirmed TOTP, the
MFA method set to TOTP, and pending logins for the code step.

Everything goes through the product's models and crypto (bulk inserts for speed);
only the password hash is computed once and shared, with the production method
(scrypt by default), since the password step measures exactly that hash.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import statistics
import time
from dataclasses import dataclass

from flask import g, session
from flask_wtf.csrf import generate_csrf
from werkzeug.security import check_password_hash

from standalone_mfa.core import crypto
from standalone_mfa.core.clock import now
from standalone_mfa.core.db import db, is_sqlite
from standalone_mfa.core.models import MfaThrottle, TotpCredential, User, WebSession
from standalone_mfa.directory import settings
from standalone_mfa.factors import passwords, totp, webauthn
from standalone_mfa.ops import schema
from standalone_mfa.signin import state

PASSWORD = "bench-password-1"
USERNAME_FORMAT = "user{:06d}"
BATCH = 1000  # rows per INSERT: well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class BenchUser:
    id: int
    username: str
    secret: str  # base32, kept by the load generator to compute codes client-side


@dataclass(frozen=True)
class PendingLogin:
    """A session in state totp_verify, as the password step leaves it."""

    user: BenchUser
    cookie: str  # the session token the browser would hold
    csrf_token: str  # the signed token the code form would carry


def fresh_database() -> None:
    """The migrated schema on an empty database: a SQLite file is new anyway; a server
    database is wiped (every table, the migration history too), then upgraded."""
    with db.connection_context():
        if not is_sqlite():
            for table in db.get_tables():
                db.execute_sql(f'DROP TABLE IF EXISTS "{table}" CASCADE')
        schema.upgrade()


def seed_users(count: int) -> list[BenchUser]:
    """`count` users, each with a confirmed TOTP credential and the second-factor
    throttle row its confirming code left behind (zero failures); MFA method TOTP."""
    password_hash = passwords.hash_password(PASSWORD)
    at = now()
    secrets_by_name = {USERNAME_FORMAT.format(i): totp.new_secret() for i in range(count)}
    names = list(secrets_by_name)
    with db.connection_context():
        for start in range(0, count, BATCH):
            with db.atomic():
                User.insert_many(
                    [
                        {"username": name, "password_hash": password_hash, "created_at": at}
                        for name in names[start : start + BATCH]
                    ]
                ).execute()
        ids = dict(User.select(User.username, User.id).tuples())
        for start in range(0, count, BATCH):
            with db.atomic():
                TotpCredential.insert_many(
                    [
                        {
                            "user": ids[name],
                            "secret_encrypted": crypto.encrypt(secrets_by_name[name]),
                            "algorithm": totp.ALGORITHM,
                            "digits": totp.DIGITS,
                            "period": totp.PERIOD,
                            "confirmed_at": at,
                            "last_used_step": 0,
                        }
                        for name in names[start : start + BATCH]
                    ]
                ).execute()
                MfaThrottle.insert_many(
                    [{"user": ids[name], "failures": 0} for name in names[start : start + BATCH]]
                ).execute()
        settings.set_mfa_method("totp", actor="bench")
    return [BenchUser(ids[name], name, secrets_by_name[name]) for name in names]


def seed_pending_logins(app, users: list[BenchUser]) -> list[PendingLogin]:
    """One pending code step per user, written straight into `web_session`.

    The password step would make the same rows, but at scrypt's pace (tens per
    second); the code step needs thousands. The CSRF token is made by Flask-WTF for
    each session, exactly as the verify page would."""
    at = now()
    rows, pending = [], []
    with app.test_request_context("/mfa/verify"):
        for user in users:
            session.pop("csrf_token", None)
            g.pop("csrf_token", None)
            csrf_token = generate_csrf()
            cookie = crypto.new_token()
            rows.append(
                {
                    "token_hash": crypto.hash_token(cookie),
                    "state": state.TOTP_VERIFY,
                    "user": user.id,
                    "created_at": at,
                    "state_since": at,
                    "last_seen_at": at,
                    "data": json.dumps({"csrf_token": session["csrf_token"]}),
                    "ip": "127.0.0.1",
                    "user_agent": "bench",
                }
            )
            pending.append(PendingLogin(user, cookie, csrf_token))
    with db.connection_context():
        for start in range(0, len(rows), BATCH):
            with db.atomic():
                WebSession.insert_many(rows[start : start + BATCH]).execute()
    return pending


def seed_signed_in_sessions(users: list[BenchUser]) -> list[str]:
    """A signed-in session (both factors passed) per user, written straight into
    `web_session`, as the code step leaves it; the cookie tokens, for the gateway phase."""
    at = now()
    rows, tokens = [], []
    for user in users:
        token = crypto.new_token()
        rows.append(
            {
                "token_hash": crypto.hash_token(token),
                "state": state.AUTHENTICATED,
                "user": user.id,
                "created_at": at,
                "state_since": at,
                "last_seen_at": at,
                "second_factor_at": at,
                "data": "{}",
                "ip": "127.0.0.1",
                "user_agent": "bench",
            }
        )
        tokens.append(token)
    with db.connection_context():
        for start in range(0, len(rows), BATCH):
            with db.atomic():
                WebSession.insert_many(rows[start : start + BATCH]).execute()
    return tokens


def password_hash_seconds(repeat: int = 5) -> tuple[float, float]:
    """Median wall-clock and CPU time of one check of the production password hash,
    in this process. On a shared machine the two differ: wall time is what a client
    waits, CPU time what the hash costs."""
    password_hash = passwords.hash_password(PASSWORD)
    wall, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.thread_time()
        check_password_hash(password_hash, PASSWORD)
        wall.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
    return statistics.median(wall), statistics.median(cpu)


@contextlib.contextmanager
def _quiet_audit():
    """No audit line on the terminal per seeded row: thousands would bury the table."""
    audit_log = logging.getLogger("standalone_mfa.audit")
    was_disabled, audit_log.disabled = audit_log.disabled, True
    try:
        yield
    finally:
        audit_log.disabled = was_disabled


def seed_app_passwords(users: list[BenchUser]) -> list[tuple[str, str]]:
    """One app password per user, made by the product's own service (as after a
    re-authentication with both factors: it satisfies any rule); (username, secret)
    pairs for the app-password phase. Needs the app-password feature (issue 18)."""
    from standalone_mfa.factors import app_passwords

    made = []
    with _quiet_audit(), db.connection_context():
        by_name = {
            u.username: u
            for u in User.select().where(User.username.in_([user.username for user in users]))
        }
        for user in users:
            secret = app_passwords.create(
                by_name[user.username], "bench", two_factor=True, actor="bench"
            )
            made.append((user.username, secret))
    return made


def seed_passkeys(app, users: list[BenchUser], key_class) -> list:
    """One passkey per user, made by the product's own registration ceremony (options,
    then the software authenticator's answer verified and stored): the keys, to sign
    the passkey phase's assertions with. `key_class`: tests/support/softkey.SoftKey."""
    origin = app.config["WEBAUTHN_ORIGINS"][0]
    binding = "bench-registration-" + "x" * 24
    keys = []
    with _quiet_audit(), app.test_request_context("/account/passkeys/new"):
        by_id = {u.id: u for u in User.select().where(User.id.in_([user.id for user in users]))}
        for user in users:
            key = key_class(origin)
            at = now()
            options = webauthn.registration_options(
                by_id[user.id], webauthn.PASSKEY, binding=binding, at=at
            )
            outcome = webauthn.verify_registration(
                by_id[user.id], key.create(options), kind=webauthn.PASSKEY, name="bench",
                binding=binding, at=at,
            )  # fmt: skip
            if not outcome.ok:
                raise RuntimeError(f"passkey registration refused: {outcome.problem}")
            keys.append(key)
    return keys


def passkey_assertions(app, browser_cookie: str, keys: list, count: int) -> list[str]:
    """`count` answers to passkey sign-in options, each to its own challenge: made by
    the product's own `authentication_options` (what the sign-in page embeds) for the
    browser whose anonymous cookie is `browser_cookie` (its ceremony binding is in
    it), signed by `keys` in turn with a 0 counter (a synced passkey's)."""
    answers = []
    with app.test_request_context("/login", headers={"Cookie": browser_cookie}):
        binding = webauthn.binding_of(session)
        for index in range(count):
            options = webauthn.authentication_options(None, binding=binding, at=now())
            answers.append(keys[index % len(keys)].get(options, counter=0))
    return answers


# --- OpenID Connect: a client, codes to exchange, access tokens to read userinfo with ----

OIDC_REDIRECT_URI = "https://app.bench.test/oauth/callback"
# One PKCE pair for every code: the server checks the verifier against each code's
# challenge as it would any other (the cost is the same).
PKCE_VERIFIER = "bench-verifier-" + "v" * 40
CODE_LIFETIME_SECONDS = 600  # the product's 60 s is shorter than seeding plus a phase


@dataclass(frozen=True)
class OidcBenchClient:
    client_id: str
    secret: str


def seed_oidc_client() -> OidcBenchClient:
    """A confidential client, as an administrator registers one (one_factor, anyone),
    and the signing keys, as `db upgrade` makes them at the first start."""
    from standalone_mfa.oidc import clients, keys

    with db.connection_context():
        keys.ensure_keys()
        row, secret = clients.add("Bench", [OIDC_REDIRECT_URI], policy="one_factor", actor="bench")
    return OidcBenchClient(row.client_id, secret)


def _pkce_challenge() -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(PKCE_VERIFIER.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _seed_oidc_subjects(users: list[BenchUser]) -> None:
    """Each user's `sub`, as the first authorization code a person gets makes it."""
    import secrets

    with db.connection_context():
        for start in range(0, len(users), BATCH):
            with db.atomic():
                for user in users[start : start + BATCH]:
                    User.update(oidc_subject=secrets.token_urlsafe(24)).where(
                        (User.id == user.id) & User.oidc_subject.is_null()
                    ).execute()


# What the bench's grants were given: the person signed in with a password and a code.
_GRANTED = {
    "scope": "openid profile email groups",
    "amr": "pwd otp mfa",
    "acr": "two_factor",
}


def _seed_oidc_grants(client: OidcBenchClient, users: list[BenchUser], model, row) -> list[str]:
    """A new token per user, stored in `model` as a grant of `client` to the user (its
    scope, `amr`, `acr`, `auth_time` and family) plus what `row(token, at)` adds,
    after each user's `sub`; the tokens, in the users' order."""
    from standalone_mfa.core.models import OidcClient

    at = now()
    tokens = [crypto.new_token() for _ in users]
    _seed_oidc_subjects(users)
    with db.connection_context():
        client_pk = OidcClient.get(OidcClient.client_id == client.client_id).id
        pairs = zip(tokens, users, strict=True)
        rows = [
            {
                **_GRANTED,
                "client": client_pk,
                "user": user.id,
                "auth_time": at,
                "family": crypto.new_token(18),
                **row(token, at),
            }
            for token, user in pairs
        ]
        for start in range(0, len(rows), BATCH):
            with db.atomic():
                model.insert_many(rows[start : start + BATCH]).execute()
    return tokens


def seed_oidc_codes(client: OidcBenchClient, users: list[BenchUser]) -> list[str]:
    """An authorization code per user, written as /authorize leaves them (hashed, with
    the PKCE challenge, scope `openid profile email groups`, the user's `sub` made);
    the codes, each to be exchanged once."""
    from standalone_mfa.core.models import OidcAuthorizationCode

    challenge = _pkce_challenge()
    return _seed_oidc_grants(
        client,
        users,
        OidcAuthorizationCode,
        lambda code, at: {
            "code_hash": crypto.hash_token(code),
            "redirect_uri": OIDC_REDIRECT_URI,
            "nonce": "bench-nonce",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "created_at": at,
            "expires_at": at + dt.timedelta(seconds=CODE_LIFETIME_SECONDS),
        },
    )


def seed_oidc_access_tokens(client: OidcBenchClient, users: list[BenchUser]) -> list[str]:
    """A live access token per user (scope `openid profile email groups`), stored as
    the token endpoint stores them; the tokens, for the userinfo phase."""
    from standalone_mfa.core.models import OidcToken

    return _seed_oidc_grants(
        client,
        users,
        OidcToken,
        lambda token, at: {
            "access_token_hash": crypto.hash_token(token),
            "issued_at": at,
            "access_expires_at": at + dt.timedelta(hours=12),
        },
    )
