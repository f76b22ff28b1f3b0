"""ops/keys: `rotate-keys` re-encrypts every value stored under MFA_ENCRYPTION_KEYS
(TOTP secrets, set-ups in progress, recovery codes on show, pending notices' facts),
so that the old key can be dropped; a value no key reads changes nothing."""

from __future__ import annotations

import ast
import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from support.app import START, make_app
from support.paths import PACKAGE

from standalone_mfa.core import crypto
from standalone_mfa.core.crypto import generate_key
from standalone_mfa.core.models import Notice, TotpCredential, User, WebSession
from standalone_mfa.ops import keys
from standalone_mfa.signin.state import AUTHENTICATED, SHOWN_CODES_KEY, TOTP_SETUP


def add_session(user, number, *, state, pending=None, data=None):
    return WebSession.create(
        token_hash=f"{number:064d}",
        state=state,
        user=user,
        created_at=START,
        state_since=START,
        last_seen_at=START,
        data=json.dumps(data or {}),
        pending_secret_encrypted=pending,
    )


def store_one_of_each():
    """Each kind of encrypted value, as the code stores it; returns the plaintexts."""
    alice = User.get(User.username == "alice")
    TotpCredential.create(
        user=alice,
        secret_encrypted=crypto.encrypt("ALICESECRET"),
        confirmed_at=START,
        last_used_step=0,
    )
    add_session(alice, 1, state=TOTP_SETUP, pending=crypto.encrypt("SIGNINSETUP"))
    add_session(
        alice,
        2,
        state=AUTHENTICATED,
        pending=crypto.encrypt("NEWAUTHENTICATOR"),
        data={SHOWN_CODES_KEY: crypto.encrypt("code-1\ncode-2"), "other": "kept"},
    )
    add_session(alice, 3, state=AUTHENTICATED, data={"csrf_token": "x"})
    Notice.create(
        user=alice,
        to_address="alice@example.com",
        kind="password_changed",
        facts=crypto.encrypt('{"ip": "192.0.2.1"}'),
        created_at=START,
        next_attempt_at=START,
    )
    sent = crypto.encrypt('{"ip": "192.0.2.2"}')
    Notice.create(
        user=alice,
        to_address="alice@example.com",
        kind="password_changed",
        facts=sent,
        created_at=START,
        next_attempt_at=START,
        sent_at=START,
    )
    return sent


def stored_values():
    values = [row.secret_encrypted for row in TotpCredential.select()]
    values += [
        row.pending_secret_encrypted
        for row in WebSession.select().where(WebSession.pending_secret_encrypted.is_null(False))
    ]
    for row in WebSession.select():
        shown = json.loads(row.data).get(SHOWN_CODES_KEY)
        values += [shown] if shown else []
    values += [row.facts for row in Notice.select().where(Notice.sent_at.is_null())]
    return values


def test_every_stored_secret_is_reencrypted_under_the_newest_key(tmp_path, clock):
    old_key, new_key = generate_key(), generate_key()
    app = make_app(tmp_path, clock, MFA_ENCRYPTION_KEYS=[old_key])
    with app.app_context():
        sent = store_one_of_each()
        before = {Fernet(old_key).decrypt(v.encode()) for v in stored_values()}
    app.config["MFA_ENCRYPTION_KEYS"] = [new_key, old_key]
    app.extensions["standalone_mfa.fernet"] = crypto.build_fernet([new_key, old_key])
    with app.app_context():
        rotated = keys.rotate_all()
        assert rotated == keys.Rotated(credentials=1, set_ups=2, shown_codes=1, notices=1)
        values = stored_values()
        assert len(values) == 5
        assert {Fernet(new_key).decrypt(v.encode()) for v in values} == before
        for value in values:
            with pytest.raises(InvalidToken):
                Fernet(old_key).decrypt(value.encode())
        # Other data is kept as it was; a sent notice is no longer needed, left alone.
        assert json.loads(WebSession.get(WebSession.token_hash == f"{2:064d}").data)["other"]
        assert Notice.get(Notice.sent_at.is_null(False)).facts == sent


def test_a_value_no_key_reads_changes_nothing(tmp_path, clock):
    old_key, new_key = generate_key(), generate_key()
    app = make_app(tmp_path, clock, MFA_ENCRYPTION_KEYS=[old_key])
    with app.app_context():
        store_one_of_each()
        before = stored_values()
    app.extensions["standalone_mfa.fernet"] = crypto.build_fernet([new_key])  # old one lost
    with app.app_context():
        with pytest.raises(InvalidToken):
            keys.rotate_all()
        assert stored_values() == before


def test_every_module_that_encrypts_is_one_rotate_keys_knows():
    """A new kind of encrypted value must be added to ops/keys: the modules that call
    `crypto.encrypt` are exactly the homes of the values it re-encrypts."""
    encrypting = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "encrypt"
                and getattr(node.func.value, "id", None) == "crypto"
            ):
                encrypting.add(path.relative_to(PACKAGE).as_posix())
    assert encrypting == {
        "factors/totp.py",  # TotpCredential.secret_encrypted
        "signin/setup_secret.py",  # WebSession.pending_secret_encrypted
        "signin/sessions.py",  # the recovery codes on show, in WebSession.data
        "notices/outbox.py",  # Notice.facts
        "oidc/keys.py",  # OidcSigningKey.private_jwk_encrypted
    }
