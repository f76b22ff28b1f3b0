"""An OpenID client's side of the flow, through the test client: register a client,
send a browser to /authorize with PKCE, exchange the code, verify the ID token."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet

from standalone_mfa.oidc import clients

ISSUER = "http://localhost"
REDIRECT_URI = "https://app.example.com/oauth/callback"


@dataclass
class Registered:
    client_id: str
    secret: str | None
    redirect_uri: str = REDIRECT_URI


def register_client(app, name="App", *, redirect_uris=(REDIRECT_URI,), **options) -> Registered:
    with app.app_context():
        row, secret = clients.add(name, list(redirect_uris), actor="test", **options)
    return Registered(row.client_id, secret, redirect_uris[0])


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_path(client: Registered, challenge: str | None = None, **params) -> str:
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": "openid profile email groups",
        "state": "st-1",
    }
    if challenge is not None:
        query |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    query |= params
    query = {k: v for k, v in query.items() if v is not None}
    return "/authorize?" + urlencode(query)


def answer(response) -> dict:
    """The parameters of a redirect to the client."""
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def code_for(browser, client: Registered, **params) -> tuple[str, str]:
    """A signed-in browser's code for `client`: (code, verifier)."""
    verifier, challenge = pkce()
    response = browser.get(authorize_path(client, challenge, **params))
    found = answer(response)
    assert "code" in found, found
    return found["code"], verifier


def exchange(app, client: Registered, code: str, verifier: str | None, *, method="basic", **extra):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    return token_request(app, client, form | extra, method=method)


def token_request(app, client: Registered, form: dict, *, method="basic"):
    headers = {}
    form = dict(form)
    if method == "basic":
        raw = f"{client.client_id}:{client.secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    elif method == "post":
        form |= {"client_id": client.client_id, "client_secret": client.secret}
    else:
        form |= {"client_id": client.client_id}
    return app.test_client().post("/token", data=form, headers=headers)


def verified_claims(app, id_token: str, clock) -> tuple[dict, dict]:
    """(header, claims) of an ID token verified with the published JWKS."""
    key_set = KeySet.import_key_set(app.test_client().get("/jwks.json").get_json())
    token = jwt.decode(id_token, key_set, algorithms=["RS256", "ES256"])
    return dict(token.header), dict(token.claims)
