"""Codes, access tokens and refresh tokens at rest: only their SHA-256 is stored; a
code is used once, a refresh token rotates at each use; a second use of either
revokes every token of its `family` (the code's, and each refresh made from it:
someone holds a copy). Userinfo reads a token, its user and groups in two queries.

Lifetimes: a code 60 s; an access token OIDC_ACCESS_TOKEN_SECONDS; a refresh token
OIDC_REFRESH_TOKEN_SECONDS from its own issue (each rotation starts it again)."""

from __future__ import annotations

import datetime as dt

from authlib.oauth2.rfc6749 import InvalidGrantError

from ..core import audit, crypto
from ..core.clock import now
from ..core.config import setting
from ..core.db import Prepared, write_transaction
from ..core.models import OidcAuthorizationCode, OidcClient, OidcToken, User
from ..directory.groups import groups_of
from . import claims, clients

MAX_TOKEN_LENGTH = 256


def _hash(value: str | None) -> str | None:
    if not value or len(value) > MAX_TOKEN_LENGTH:
        return None
    return crypto.hash_token(value)


def revoke_family(family: str, at: dt.datetime) -> int:
    return (
        OidcToken.update(revoked_at=at)
        .where((OidcToken.family == family) & OidcToken.revoked_at.is_null())
        .execute()
    )


_CODE = Prepared(
    lambda slot: (
        OidcAuthorizationCode.select(OidcAuthorizationCode, User)
        .join(User)
        .where(OidcAuthorizationCode.code_hash == slot("code_hash"))
    )
)
_CLAIM_CODE = Prepared(
    lambda slot: OidcAuthorizationCode.update(
        {OidcAuthorizationCode.used_at: slot("at", OidcAuthorizationCode.used_at)}
    ).where((OidcAuthorizationCode.id == slot("id")) & OidcAuthorizationCode.used_at.is_null())
)
_TOKEN_COLUMNS = (
    "access_token_hash",
    "refresh_token_hash",
    "client",
    "user",
    "scope",
    "auth_time",
    "amr",
    "acr",
    "session_hash",
    "family",
    "issued_at",
    "access_expires_at",
    "refresh_expires_at",
)
_INSERT_TOKEN = Prepared(
    lambda slot: OidcToken.insert(
        {getattr(OidcToken, name): slot(name, getattr(OidcToken, name)) for name in _TOKEN_COLUMNS}
    )
)


def live_code(code: str, client: OidcClient) -> OidcAuthorizationCode | None:
    """The client's unused, unexpired code (read only: `save` claims it, in the
    transaction that stores the tokens). A code used before: its family's tokens are
    revoked (SC-59) and None. Another client's code, an expired or unknown one: None."""
    code_hash = _hash(code)
    if code_hash is None:
        return None
    rows = _CODE.run(code_hash=code_hash)
    row = rows[0] if rows else None
    if row is None or row.client_id != client.id:
        return None
    at = now()
    if row.used_at is not None:
        _replayed(row, "oidc_code_reused", client, at)
        return None
    return row if row.expires_at > at else None


def _replayed(row, event: str, client: OidcClient, at) -> None:
    """A code or refresh token presented again: someone else holds a copy, so every
    token of its family is revoked, and the event audited."""
    revoked = revoke_family(row.family, at)
    audit.record(
        event, "denied", user=row.user, detail=f"{client.name}: {revoked} token(s) revoked"
    )


def save(token: dict, request) -> None:
    """Store what the token endpoint just issued (hashes only), in the family of the
    code or refresh token it came from. A code is claimed here, in the same write
    transaction (one conditional UPDATE: of two requests racing with it, one wins); the
    one that lost revokes the family, as a second use does, and gets `invalid_grant`."""
    at = now()
    code = request.authorization_code
    source = code or request.refresh_token
    origin = source.row
    refresh = token.get("refresh_token")
    with write_transaction():
        claimed = code is None or _CLAIM_CODE.run(id=origin.id, at=at) == 1
        if claimed:
            _INSERT_TOKEN.run(
                access_token_hash=crypto.hash_token(token["access_token"]),
                refresh_token_hash=crypto.hash_token(refresh) if refresh else None,
                client=request.client.row.id,
                user=origin.user_id,
                scope=token.get("scope") or "",
                auth_time=origin.auth_time,
                amr=origin.amr,
                acr=origin.acr,
                session_hash=origin.session_hash,
                family=origin.family,
                issued_at=at,
                access_expires_at=at + dt.timedelta(seconds=setting("OIDC_ACCESS_TOKEN_SECONDS")),
                refresh_expires_at=(
                    at + dt.timedelta(seconds=setting("OIDC_REFRESH_TOKEN_SECONDS"))
                    if refresh
                    else None
                ),
            )
    if not claimed:
        _replayed(origin, "oidc_code_reused", request.client.row, at)
        raise InvalidGrantError("Invalid 'code' in request.")


def use_refresh_token(refresh_token: str, client: OidcClient) -> OidcToken | None:
    """The client's live refresh token, marked rotated at once (one conditional
    UPDATE). A rotated or revoked one used again revokes its family (SC-61)."""
    token_hash = _hash(refresh_token)
    if token_hash is None:
        return None
    row = (
        OidcToken.select(OidcToken, User)
        .join(User)
        .where(OidcToken.refresh_token_hash == token_hash)
        .first()
    )
    if row is None or row.client_id != client.id:
        return None
    at = now()
    if row.rotated_at is None and row.revoked_at is None:
        if row.refresh_expires_at is None or row.refresh_expires_at <= at:
            return None
        claimed = (
            OidcToken.update(rotated_at=at)
            .where(
                (OidcToken.id == row.id)
                & OidcToken.rotated_at.is_null()
                & OidcToken.revoked_at.is_null()
            )
            .execute()
        )
        if claimed == 1:
            return row
    _replayed(row, "oidc_refresh_reused", client, at)
    return None


def may_still_use(row: OidcToken) -> bool:
    """Whether the token's user is still among its client's subjects (a refresh of
    someone removed from the group fails, SC-63)."""
    client = OidcClient.get_by_id(row.client_id)
    return clients.may_use(client, row.user.username, groups_of(row.user))


def find(token_string: str, hint: str | None) -> tuple[OidcToken, str] | None:
    """The token a revocation names (access or refresh, whatever the hint says)."""
    token_hash = _hash(token_string)
    if token_hash is None:
        return None
    order = ["refresh_token", "access_token"]
    if hint == "access_token":
        order.reverse()
    columns = {
        "refresh_token": OidcToken.refresh_token_hash,
        "access_token": OidcToken.access_token_hash,
    }
    for kind in order:
        column = columns[kind]
        row = OidcToken.get_or_none(column == token_hash)
        if row is not None:
            return row, kind
    return None


def revoke(row: OidcToken, kind: str) -> None:
    """RFC 7009: a refresh token revokes its whole family (every access token it led
    to); an access token, itself."""
    at = now()
    if kind == "refresh_token":
        revoke_family(row.family, at)
    else:
        OidcToken.update(revoked_at=at).where(
            (OidcToken.id == row.id) & OidcToken.revoked_at.is_null()
        ).execute()


def revoke_session(session_hash: str) -> int:
    """End the tokens a portal session led to (its sign-out at /end-session), those
    without a refresh token: an `offline_access` grant outlives the session, by
    design."""
    return (
        OidcToken.update(revoked_at=now())
        .where(
            (OidcToken.session_hash == session_hash)
            & OidcToken.revoked_at.is_null()
            & OidcToken.refresh_token_hash.is_null()
        )
        .execute()
    )


def claims_of(user: User, scope: str | None) -> dict:
    groups = groups_of(user) if "groups" in claims.scopes(scope) else ()
    return claims.user_claims(user, scope, groups)


# --- Userinfo: the hot path ------------------------------------------------------------------

_BEARER = Prepared(
    lambda slot: (
        OidcToken.select(OidcToken.scope, OidcToken.access_expires_at, OidcToken.revoked_at, User)
        .join(User)
        .where(OidcToken.access_token_hash == slot("token_hash"))
    )
)


def userinfo(access_token: str | None) -> dict | None:
    """The claims a live access token with the `openid` scope may read; None for a
    missing, unknown, expired or revoked token."""
    token_hash = _hash(access_token)
    if token_hash is None:
        return None
    rows = _BEARER.run(token_hash=token_hash)
    if not rows:
        return None
    row = rows[0]
    if row.revoked_at is not None or _datetime(row.access_expires_at) <= now():
        return None
    if "openid" not in claims.scopes(row.scope):
        return None
    return claims_of(row.user, row.scope)


def _datetime(value) -> dt.datetime:
    return OidcToken.access_expires_at.python_value(value) if isinstance(value, str) else value
