"""The keys that sign ID tokens: one active RS256 key (2048 bits) and one active ES256
key, made at the first need, their private JWK encrypted with `MFA_ENCRYPTION_KEYS`
(re-encrypted by `mfa rotate-keys`), their `kid` the RFC 7638 thumbprint.

`rotate` makes new active keys and retires the old ones: a retired key signs nothing
more, but its public half stays in the JWKS until every token it signed has expired
(the ID token's lifetime after its retirement), so clients that cached a token or the
key set keep verifying. Several instances starting at once on PostgreSQL make one
active key per algorithm: the creation runs under a transaction-scoped advisory lock
(SQLite's write lock does the same), and reads again before it creates.

Keys are cached in the process (decrypting and parsing a private key costs more than
signing); the cache is checked against the table's active `kid`s at most once every
`CHECK_SECONDS`, so a rotation made by another instance is seen within that delay."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass

from joserfc.jwk import ECKey, RSAKey

from ..core import crypto
from ..core.clock import now
from ..core.config import setting
from ..core.db import db, is_sqlite, write_transaction
from ..core.models import OidcSigningKey

RS256 = "RS256"
ES256 = "ES256"
ALGORITHMS = (RS256, ES256)
SIGNING_ALG = RS256  # what ID tokens are signed with (every client accepts it)
RSA_BITS = 2048
CHECK_SECONDS = 10.0
_ADVISORY_LOCK = 0x0_1D_C0_4E_75  # "oidc keys": one number every instance agrees on


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: object  # joserfc RSAKey or ECKey, with its private half


# Per database (tests run many apps in one process): {database: (keys, checked at)}.
_cache: dict = {}
_lock = threading.Lock()


def _generate(alg: str):
    parameters = {"alg": alg, "use": "sig"}
    if alg == RS256:
        key = RSAKey.generate_key(RSA_BITS, parameters=parameters)
    else:
        key = ECKey.generate_key("P-256", parameters=parameters)
    kid = key.thumbprint()
    key = type(key).import_key(key.as_dict(private=True) | {"kid": kid})
    return kid, key


def _serialise_lock() -> None:
    """On PostgreSQL, one instance at a time past this point until the transaction ends
    (SQLite's IMMEDIATE transaction already holds the only write lock)."""
    if not is_sqlite():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))


def _active_rows() -> list[OidcSigningKey]:
    return list(
        OidcSigningKey.select()
        .where(OidcSigningKey.retired_at.is_null())
        .order_by(OidcSigningKey.created_at.desc(), OidcSigningKey.id.desc())
    )


def _create(alg: str, at: dt.datetime) -> OidcSigningKey:
    kid, key = _generate(alg)
    return OidcSigningKey.create(
        kid=kid,
        alg=alg,
        private_jwk_encrypted=crypto.encrypt(json.dumps(key.as_dict(private=True))),
        public_jwk=json.dumps(key.as_dict(private=False)),
        created_at=at,
    )


def ensure_keys() -> list[OidcSigningKey]:
    """The active keys, one per algorithm, made if missing (at start or first need)."""
    rows = _active_rows()
    if {row.alg for row in rows} >= set(ALGORITHMS):
        return rows
    with write_transaction():
        _serialise_lock()
        rows = _active_rows()
        missing = set(ALGORITHMS) - {row.alg for row in rows}
        at = now()
        for alg in ALGORITHMS:
            if alg in missing:
                rows.append(_create(alg, at))
    return rows


def rotate() -> list[str]:
    """New active keys; the old ones retired (published until their tokens expire).
    Returns the new `kid`s."""
    with write_transaction():
        _serialise_lock()
        at = now()
        OidcSigningKey.update(retired_at=at).where(OidcSigningKey.retired_at.is_null()).execute()
        kids = [_create(alg, at).kid for alg in ALGORITHMS]
    forget_cache()
    return kids


def forget_cache() -> None:
    with _lock:
        _cache.pop(db.obj, None)


def _load(rows) -> dict[str, SigningKey]:
    found = {}
    for row in rows:
        data = json.loads(crypto.decrypt(row.private_jwk_encrypted))
        cls = RSAKey if row.alg == RS256 else ECKey
        if row.alg in found:
            continue
        found[row.alg] = SigningKey(row.kid, row.alg, cls.import_key(data))
    return found


def signing_key(alg: str = SIGNING_ALG) -> SigningKey:
    """The active key for `alg`, from the cache (checked against the table every few
    seconds; made at first need)."""
    moment = time.monotonic()
    database = db.obj
    keys, checked = _cache.get(database, (None, float("-inf")))
    if keys is not None and moment - checked < CHECK_SECONDS:
        return keys[alg]
    with _lock:
        kids = dict(
            OidcSigningKey.select(OidcSigningKey.alg, OidcSigningKey.kid)
            .where(OidcSigningKey.retired_at.is_null())
            .tuples()
        )
        if keys is None or {k.alg: k.kid for k in keys.values()} != kids or len(kids) < 2:
            keys = _load(ensure_keys())
        _cache[database] = (keys, moment)
    return keys[alg]


def published_until(retired_at: dt.datetime) -> dt.datetime:
    """Until when a key retired at `retired_at` stays in the JWKS: the longest a token
    it signed can live (the ID token's and the access token's lifetimes), plus a minute
    for clocks."""
    longest = max(setting("OIDC_ID_TOKEN_SECONDS"), setting("OIDC_ACCESS_TOKEN_SECONDS"))
    return retired_at + dt.timedelta(seconds=longest + 60)


def jwks() -> dict:
    """The public key set: the active keys, and retired ones whose tokens may live."""
    ensure_keys()
    at = now()
    keys = []
    for row in OidcSigningKey.select().order_by(OidcSigningKey.created_at.desc()):
        if row.retired_at is None or published_until(row.retired_at) > at:
            keys.append(json.loads(row.public_jwk) | {"kid": row.kid})
    return {"keys": keys}


def remove_expired() -> int:
    """Delete retired keys no token can need any more (maintenance)."""
    at = now()
    gone = [
        row.id
        for row in OidcSigningKey.select().where(OidcSigningKey.retired_at.is_null(False))
        if published_until(row.retired_at) <= at
    ]
    if gone:
        OidcSigningKey.delete().where(OidcSigningKey.id.in_(gone)).execute()
    return len(gone)


def verification_keys():
    """Every published public key, as a joserfc KeySet (an `id_token_hint` to check)."""
    from joserfc.jwk import KeySet

    return KeySet.import_key_set(jwks())
