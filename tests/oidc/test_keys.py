"""Signing keys: made at first need, encrypted at rest, one active per algorithm even
when instances race, rotated with the old public half published until its tokens
expire; `oidc keys rotate` and `mfa rotate-keys`."""

from __future__ import annotations

import json

from support.client import cli, together
from support.oidc import code_for, exchange, register_client, verified_claims

from standalone_mfa.core import crypto
from standalone_mfa.core.models import AuditEvent, OidcSigningKey
from standalone_mfa.oidc import keys


def _published(app) -> list[str]:
    return [key["kid"] for key in app.test_client().get("/jwks.json").get_json()["keys"]]


def test_sc62_keys_made_at_first_need_one_per_algorithm(app):
    kids = _published(app)
    with app.app_context():
        rows = list(OidcSigningKey.select())
    assert sorted(row.alg for row in rows) == ["ES256", "RS256"]
    assert sorted(kids) == sorted(row.kid for row in rows)
    published = app.test_client().get("/jwks.json").get_json()["keys"]
    rsa = next(k for k in published if k["kty"] == "RSA")
    assert len(rsa["n"]) >= 342  # 2048 bits, base64url
    assert "d" not in rsa and "p" not in rsa  # public halves only


def test_sc62_private_keys_are_encrypted_at_rest(app):
    _published(app)
    with app.app_context():
        for row in OidcSigningKey.select():
            assert '"d"' not in row.private_jwk_encrypted
            assert '"d"' in crypto.decrypt(row.private_jwk_encrypted)
            assert '"d"' not in row.public_jwk


def test_sc62_kid_is_the_thumbprint(app):
    from joserfc.jwk import import_key

    for key in app.test_client().get("/jwks.json").get_json()["keys"]:
        assert import_key(key).thumbprint() == key["kid"]


def test_sc62_racing_instances_make_one_key_per_algorithm(app):
    def make():
        with app.app_context():
            keys.ensure_keys()

    together(*([make] * 4))
    with app.app_context():
        active = OidcSigningKey.select().where(OidcSigningKey.retired_at.is_null())
        assert sorted(row.alg for row in active) == ["ES256", "RS256"]


def test_sc62_rotated_key_published_until_its_tokens_expire(app, browser, clock):
    client = register_client(app, policy="one_factor")
    browser.login("alice")
    code, verifier = code_for(browser, client)
    old_token = exchange(app, client, code, verifier).get_json()["id_token"]
    old_kid = verified_claims(app, old_token, clock)[0]["kid"]
    result = cli(app, "oidc", "keys", "rotate")
    assert result.exit_code == 0, result.output
    with app.app_context():
        keys.forget_cache()
    kids = _published(app)
    assert old_kid in kids and len(kids) == 4
    verified_claims(app, old_token, clock)  # still verifies
    code, verifier = code_for(browser, client)
    new_token = exchange(app, client, code, verifier).get_json()["id_token"]
    assert verified_claims(app, new_token, clock)[0]["kid"] != old_kid
    clock.advance(3600 + 61)
    assert old_kid not in _published(app)
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.event == "oidc_keys_rotated").count() == 1


def test_other_instance_rotation_is_seen_after_the_cache_check(app, clock, monkeypatch):
    with app.app_context():
        first = keys.signing_key().kid
        keys.rotate()  # as another instance would: this process's cache is dropped too
        second = keys.signing_key().kid
        assert second != first
        monkeypatch.setattr(keys, "CHECK_SECONDS", 0)
        OidcSigningKey.update(retired_at=clock.now()).execute()
        keys.ensure_keys()
        assert keys.signing_key().kid not in (first, second)


def test_mfa_rotate_keys_re_encrypts_signing_keys(app):
    from cryptography.fernet import Fernet

    _published(app)
    with app.app_context():
        before = {row.kid: row.private_jwk_encrypted for row in OidcSigningKey.select()}
    old = app.config["MFA_ENCRYPTION_KEYS"]
    app.config["MFA_ENCRYPTION_KEYS"] = [Fernet.generate_key().decode(), *old]
    result = cli(app, "mfa", "rotate-keys")
    assert result.exit_code == 0, result.output
    assert "2 OpenID Connect signing keys" in result.output
    app.config["MFA_ENCRYPTION_KEYS"] = app.config["MFA_ENCRYPTION_KEYS"][:1]
    with app.app_context():
        for row in OidcSigningKey.select():
            assert row.private_jwk_encrypted != before[row.kid]
            assert json.loads(crypto.decrypt(row.private_jwk_encrypted))["kid"] == row.kid


def test_keys_are_made_at_the_first_start(app):
    with app.app_context():
        assert OidcSigningKey.select().count() == 0
    result = cli(app, "db", "upgrade")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert OidcSigningKey.select().count() == 2
    cli(app, "db", "upgrade")
    with app.app_context():
        assert OidcSigningKey.select().count() == 2  # once
