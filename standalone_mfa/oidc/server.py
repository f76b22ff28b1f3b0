"""The OpenID provider's protocol on Authlib: the authorization code grant with PKCE
(S256, for every client), the refresh grant, revocation, the ID token, and the storage
behind them (codes and tokens hashed at rest, `oidc.tokens`).

Authlib's defaults that this module changes (docs/oidc/index.md, "Pitfalls"):
`iss`, `aud`, `iat`, `exp` and the `kid` come from our own overrides (never the
deprecated `get_jwt_config`); `auth_time` is the session's sign-in; both secret methods
(and `none` for public clients) on every grant and on revocation; PKCE required for
confidential clients too, `plain` refused; refresh tokens rotated; no `nonce` unless
sent. Authlib reads the Flask request itself (its Flask integration); the views stay
in `web.oidc`."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode

from ..core import crypto
from ..core.clock import now
from ..core.config import setting
from ..core.db import Prepared
from ..core.models import OidcAuthorizationCode, OidcClient, OidcToken, User
from . import claims, clients, keys, tokens

CODE_SECONDS = 60
SECRET_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def timestamp(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


# --- What Authlib needs to see --------------------------------------------------------------


class Client:
    """An `OidcClient` as Authlib's ClientMixin."""

    client_metadata: dict = {}

    def __init__(self, row: OidcClient):
        self.row = row
        self.client_id = row.client_id

    def get_client_id(self):
        return self.row.client_id

    def get_default_redirect_uri(self):
        return None  # `redirect_uri` is required at /authorize (OpenID Connect)

    def get_allowed_scope(self, scope):
        asked = (scope or "").split()
        kept = [s for s in asked if s in claims.SCOPES]
        if not self.row.offline:
            kept = [s for s in kept if s != "offline_access"]
        return " ".join(dict.fromkeys(kept))

    def check_redirect_uri(self, redirect_uri):
        return clients.has_redirect_uri(self.row, redirect_uri)

    def check_client_secret(self, client_secret):
        return clients.check_secret(self.row, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if clients.is_public(self.row):
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code" or (
            grant_type == "refresh_token" and self.row.offline
        )


class Code:
    """An `OidcAuthorizationCode` as Authlib's AuthorizationCodeMixin (and what the
    OpenID extension reads from it)."""

    def __init__(self, row: OidcAuthorizationCode):
        self.row = row

    def get_redirect_uri(self):
        return self.row.redirect_uri

    def get_scope(self):
        return self.row.scope

    def get_nonce(self):
        return self.row.nonce or None  # never `"nonce": null` (Authlib #921)

    def get_auth_time(self):
        return timestamp(self.row.auth_time)

    def get_acr(self):
        return self.row.acr

    def get_amr(self):
        return self.row.amr.split() or None


class Token:
    """An `OidcToken` as Authlib's TokenMixin (refresh and revocation)."""

    def __init__(self, row: OidcToken, kind: str):
        self.row = row
        self.kind = kind  # "access_token" or "refresh_token"

    def check_client(self, client):
        return self.row.client_id == client.row.id

    def get_scope(self):
        return self.row.scope

    def get_expires_in(self):
        return int((self.row.access_expires_at - self.row.issued_at).total_seconds())

    def is_expired(self):
        return False  # checked when the token is looked up

    def is_revoked(self):
        return self.row.revoked_at is not None

    def get_user(self):
        return self.row.user

    def get_client(self):
        return Client(self.row.client)


@dataclass(frozen=True)
class Grantee:
    """Who /authorize issues a code for, and how their session signed in."""

    user: User
    auth_time: dt.datetime
    amr: list
    acr: str
    session_hash: str | None


# --- Grants ---------------------------------------------------------------------------------


class PkceS256(CodeChallenge):
    """PKCE with S256, required of every client (Authlib asks it of public ones only,
    and takes `plain` by default)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only 'code_challenge_method=S256' is supported.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.row.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.row.code_challenge_method


class IdToken(OpenIDCode):
    """The ID token: `iss`, `aud`, `iat`, `exp` and the `kid` always, signed with the
    active RS256 key; the profile, email and groups claims as userinfo gives them."""

    def __init__(self):
        super().__init__(require_nonce=False)

    def exists_nonce(self, nonce, request):
        return False  # a code is single-use: a replayed nonce gets nothing more

    def get_client_algorithm(self, client):
        return keys.SIGNING_ALG

    def get_client_claims(self, client):
        issued = timestamp(now())
        return {
            "iss": issuer(),
            "aud": [client.get_client_id()],
            "iat": issued,
            "exp": issued + setting("OIDC_ID_TOKEN_SECONDS"),
        }

    def get_encode_header(self, client):
        return {"alg": keys.SIGNING_ALG, "kid": keys.signing_key().kid, "typ": "JWT"}

    def resolve_client_private_key(self, client):
        return keys.signing_key().key

    def generate_user_info(self, user, scope):
        return tokens.claims_of(user, scope)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS

    def save_authorization_code(self, code, request):
        grantee: Grantee = request.user
        # The person's `sub` is made here, once, so that the token endpoint (the hot
        # path) and userinfo only ever read it.
        claims.subject_of(grantee.user)
        at = now()
        data = request.payload.data
        OidcAuthorizationCode.create(
            code_hash=crypto.hash_token(code),
            client=request.client.row,
            user=grantee.user,
            redirect_uri=request.payload.redirect_uri,
            scope=request.client.get_allowed_scope(request.payload.scope),
            nonce=data.get("nonce") or None,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            auth_time=grantee.auth_time,
            amr=" ".join(grantee.amr),
            acr=grantee.acr,
            session_hash=grantee.session_hash,
            family=secrets.token_urlsafe(24),
            created_at=at,
            expires_at=at + dt.timedelta(seconds=CODE_SECONDS),
        )

    def query_authorization_code(self, code, client):
        row = tokens.live_code(code, client.row)
        return Code(row) if row else None

    def delete_authorization_code(self, authorization_code):
        pass  # claimed when its tokens are stored (`tokens.save`)

    def authenticate_user(self, authorization_code):
        return authorization_code.row.user

    def generate_token(
        self, user=None, scope=None, grant_type=None, expires_in=None, include_refresh_token=True
    ):
        offline = self.request.client.row.offline and "offline_access" in claims.scopes(scope)
        return super().generate_token(
            user=user,
            scope=scope,
            grant_type=grant_type,
            expires_in=expires_in,
            include_refresh_token=offline,
        )


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        row = tokens.use_refresh_token(refresh_token, self.request.client.row)
        return Token(row, "refresh_token") if row else None

    def authenticate_user(self, refresh_token):
        row = refresh_token.row
        if not tokens.may_still_use(row):
            # Removed from the client's subjects since (SC-63): the grant is no longer
            # good (RFC 6749 5.2), not a malformed request.
            raise InvalidGrantError("The person may no longer use this application.")
        return row.user

    def revoke_old_credential(self, refresh_token):
        pass  # rotated when it was looked up (`tokens.use_refresh_token`)


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = SECRET_METHODS

    def query_token(self, token_string, token_type_hint):
        found = tokens.find(token_string, token_type_hint)
        return Token(*found) if found else None

    def revoke_token(self, token, request):
        tokens.revoke(token.row, token.kind)


# --- The server -----------------------------------------------------------------------------


def issuer() -> str | None:
    """The issuer: OIDC_ISSUER, else GATEWAY_PORTAL_URL; None: OpenID is off."""
    value = setting("OIDC_ISSUER") or setting("GATEWAY_PORTAL_URL")
    return value.rstrip("/") if value else None


_CLIENT = Prepared(
    lambda slot: OidcClient.select().where(OidcClient.client_id == slot("client_id"))
)


def _query_client(client_id):
    """The client a token request names (the hot path: one prepared statement; ids
    that cannot be ours are not looked up)."""
    if not clients.could_be_client_id(client_id):
        return None
    rows = _CLIENT.run(client_id=client_id)
    return Client(rows[0]) if rows else None


def _generate_token(
    grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True
):
    token = {
        "token_type": "Bearer",
        "access_token": crypto.new_token(32),
        "expires_in": setting("OIDC_ACCESS_TOKEN_SECONDS"),
        "scope": client.get_allowed_scope(scope),
    }
    if include_refresh_token:
        token["refresh_token"] = crypto.new_token(32)
    return token


def _save_token(token, request):
    tokens.save(token, request)


def make_server(app) -> AuthorizationServer:
    server = AuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator("default", _generate_token)
    server.register_grant(CodeGrant, [PkceS256(required=True), IdToken()])
    server.register_grant(RefreshGrant)
    server.register_endpoint(Revocation)
    return server
