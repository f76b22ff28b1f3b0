"""Discovery and the issuer: what clients read first, and the portal without one."""

from __future__ import annotations

import pytest
from support.app import make_app
from support.oidc import ISSUER

from standalone_mfa.core.config import ConfigurationError


def test_discovery_names_every_endpoint_under_the_issuer(app):
    response = app.test_client().get("/.well-known/openid-configuration")
    data = response.get_json()
    assert data["issuer"] == ISSUER
    for name, path in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks.json"),
        ("revocation_endpoint", "/revoke"),
        ("end_session_endpoint", "/end-session"),
    ]:
        assert data[name] == ISSUER + path
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert set(data["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert "groups" in data["claims_supported"] and "groups" in data["scopes_supported"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Set-Cookie" not in response.headers


def test_issuer_defaults_to_the_gateway_portal_url(tmp_path, clock):
    app = make_app(tmp_path, clock, GATEWAY_PORTAL_URL="https://auth.example.com/")
    data = app.test_client().get("/.well-known/openid-configuration").get_json()
    assert data["issuer"] == "https://auth.example.com"
    assert data["token_endpoint"] == "https://auth.example.com/token"


def test_without_an_issuer_every_endpoint_is_404(tmp_path, clock):
    app = make_app(tmp_path, clock)
    client = app.test_client()
    for path in ("/.well-known/openid-configuration", "/jwks.json", "/authorize", "/userinfo"):
        assert client.get(path).status_code == 404
    assert client.post("/token").status_code == 404


def test_a_bad_issuer_stops_the_start(tmp_path, clock):
    with pytest.raises(ConfigurationError, match="OIDC_ISSUER"):
        make_app(tmp_path, clock, OIDC_ISSUER="https://auth.example.com/?x=1")


def test_token_endpoint_takes_no_cookie_and_no_csrf(app):
    response = app.test_client().post("/token", data={"grant_type": "authorization_code"})
    assert response.status_code in (400, 401)
    assert "Set-Cookie" not in response.headers
