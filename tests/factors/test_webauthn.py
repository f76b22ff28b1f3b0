"""factors/webauthn at the service level, with the in-repo software authenticator
(tests/softkey.py): registration of passkeys and security keys, the second factor, a
passkey sign-in with no username, and the rules that keep them safe (SC-51 … SC-55)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from support.app import make_app, test_config
from support.db import audit_rows
from support.softkey import SoftKey, b64

from standalone_mfa import create_app
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.core.models import User, WebAuthnChallenge, WebAuthnCredential
from standalone_mfa.factors import webauthn

ORIGIN = "http://localhost:5000"


@pytest.fixture
def ctx(app):
    with app.test_request_context():
        yield app


def alice():
    return User.get(User.username == "alice")


def bob():
    return User.get(User.username == "bob")


def register(clock, user, key, kind=webauthn.PASSKEY, name="Laptop", binding="b" * 43):
    options = webauthn.registration_options(user, kind, binding=binding, at=clock.now())
    return webauthn.verify_registration(
        user, key.create(options), kind=kind, name=name, binding=binding, at=clock.now()
    )


def sign_in(clock, key, user=None, binding="b" * 43, **get):
    options = webauthn.authentication_options(user, binding=binding, at=clock.now())
    return webauthn.verify_authentication(
        key.get(options, **get), user=user, binding=binding, at=clock.now()
    )


# --- Storage and options


def test_a_user_handle_is_64_random_bytes_made_once_never_the_username(ctx):
    user = alice()
    assert user.webauthn_user_handle is None
    handle = webauthn.user_handle(user)
    assert len(handle) == 64 and b"alice" not in handle
    assert webauthn.user_handle(alice()) == handle  # kept
    assert webauthn.user_handle(bob()) != handle


def test_passkey_options_require_a_resident_key_and_verification_and_exclude_own_keys(ctx, clock):
    user = alice()
    assert register(clock, user, SoftKey(ORIGIN)).ok
    options = webauthn.registration_options(user, "passkey", binding="x" * 43, at=clock.now())
    assert options["rp"] == {"id": "localhost", "name": "Standalone MFA"}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [-7, -8, -257]
    assert [c["id"] for c in options["excludeCredentials"]] == [
        b64(bytes(c.credential_id)) for c in webauthn.credentials_of(user)
    ]
    assert options["user"]["name"] == "alice"
    assert options["user"]["id"] != b64(b"alice")
    key_options = webauthn.registration_options(
        user, webauthn.SECURITY_KEY, binding="x" * 43, at=clock.now()
    )
    assert key_options["authenticatorSelection"]["residentKey"] == "discouraged"
    assert key_options["authenticatorSelection"]["userVerification"] == "discouraged"


def test_a_registered_passkey_is_stored_with_what_the_authenticator_said(ctx, clock):
    key = SoftKey(ORIGIN, backup=True)
    outcome = register(clock, alice(), key, name="  My   phone ")
    assert outcome.ok
    stored = WebAuthnCredential.get()
    assert bytes(stored.credential_id) == key.credential_id
    assert (stored.name, stored.kind, stored.rp_id) == ("My phone", "passkey", "localhost")
    assert stored.backup_eligible and stored.backup_state and stored.user_verified
    assert stored.transports == "internal" and stored.sign_count == 0
    assert key.user_handle == webauthn.user_handle(alice())
    assert audit_rows(ctx, "webauthn_added")[-1][1] == "ok"


def test_key_names_are_unique_per_user_and_at_most_64_characters(ctx, clock):
    assert register(clock, alice(), SoftKey(ORIGIN), name="Key").ok
    assert register(clock, alice(), SoftKey(ORIGIN), name="Key").problem == "key_name_taken"
    assert register(clock, alice(), SoftKey(ORIGIN), name="x" * 65).problem == "key_name_invalid"
    assert register(clock, alice(), SoftKey(ORIGIN), name="   ").problem == "key_name_invalid"
    assert register(clock, bob(), SoftKey(ORIGIN), name="Key").ok  # another user's


def test_rename_and_remove_only_ones_own_keys(ctx, clock):
    register(clock, alice(), SoftKey(ORIGIN), name="A")
    register(clock, alice(), SoftKey(ORIGIN), name="B")
    first = webauthn.credentials_of(alice())[0]
    client = webauthn.NO_CLIENT
    assert webauthn.rename(bob(), first.id, "Mine", client=client).problem == "key_not_found"
    assert webauthn.rename(alice(), first.id, "B", client=client).problem == "key_name_taken"
    assert webauthn.rename(alice(), first.id, "Work", client=client).ok
    assert webauthn.remove(bob(), first.id, at=clock.now(), client=client) is None
    assert webauthn.remove(alice(), first.id, at=clock.now(), client=client) == "Work"
    assert [c.name for c in webauthn.credentials_of(alice())] == ["B"]


def test_the_same_authenticator_cannot_be_registered_twice(ctx, clock):
    key = SoftKey(ORIGIN)
    assert register(clock, alice(), key, name="One").ok
    assert register(clock, bob(), key, name="Two").problem == "key_registered"
    assert WebAuthnCredential.select().count() == 1


# --- Sign-in


def test_a_passkey_signs_in_with_no_username_and_returns_its_owner(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(None, binding="b" * 43, at=clock.now())
    assert options["allowCredentials"] == [] and options["userVerification"] == "required"
    outcome = webauthn.verify_authentication(
        key.get(options), user=None, binding="b" * 43, at=clock.now()
    )
    assert outcome.ok and outcome.user.username == "alice" and outcome.user_verified
    assert WebAuthnCredential.get().last_used_at == clock.now()


def test_a_security_key_is_a_second_factor_for_its_own_user(ctx, clock):
    key = SoftKey(ORIGIN, uv=False, resident=False)
    assert register(clock, alice(), key, kind=webauthn.SECURITY_KEY).ok
    options = webauthn.authentication_options(alice(), binding="b" * 43, at=clock.now())
    assert [c["id"] for c in options["allowCredentials"]] == [b64(key.credential_id)]
    assert options["userVerification"] == "discouraged"
    outcome = webauthn.verify_authentication(
        key.get(options), user=alice(), binding="b" * 43, at=clock.now()
    )
    assert outcome.ok and not outcome.user_verified


# --- SC-51: ceremony state


def test_sc51_an_assertion_replayed_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(None, binding="b" * 43, at=clock.now())
    answer = key.get(options)
    assert webauthn.verify_authentication(answer, user=None, binding="b" * 43, at=clock.now()).ok
    again = webauthn.verify_authentication(answer, user=None, binding="b" * 43, at=clock.now())
    assert not again.ok and again.problem == "key_not_accepted"


def test_sc51_a_registration_replayed_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    options = webauthn.registration_options(alice(), "passkey", binding="b" * 43, at=clock.now())
    answer = key.create(options)
    kw = {"kind": "passkey", "binding": "b" * 43, "at": clock.now()}
    assert webauthn.verify_registration(alice(), answer, name="One", **kw).ok
    WebAuthnCredential.delete().execute()
    assert not webauthn.verify_registration(alice(), answer, name="Two", **kw).ok
    assert WebAuthnCredential.select().count() == 0


def test_sc51_a_challenge_from_another_session_is_refused_and_stays_theirs(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(None, binding="theirs" * 8, at=clock.now())
    answer = key.get(options)
    mine = webauthn.verify_authentication(answer, user=None, binding="mine" * 11, at=clock.now())
    assert not mine.ok
    theirs = webauthn.verify_authentication(
        answer, user=None, binding="theirs" * 8, at=clock.now()
    )
    assert theirs.ok


def test_sc51_an_old_challenge_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(None, binding="b" * 43, at=clock.now())
    later = clock.now() + dt.timedelta(seconds=301)
    outcome = webauthn.verify_authentication(
        key.get(options), user=None, binding="b" * 43, at=later
    )
    assert not outcome.ok


def test_sc51_a_challenge_for_one_ceremony_does_not_serve_another(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(alice(), binding="b" * 43, at=clock.now())
    outcome = webauthn.verify_authentication(
        key.get(options), user=None, binding="b" * 43, at=clock.now()
    )
    assert not outcome.ok  # a second-factor challenge is no passwordless one


def test_sc51_a_new_challenge_replaces_the_last_and_only_the_hash_of_the_binding_is_kept(
    ctx, clock
):
    key = SoftKey(ORIGIN, uv=False, resident=False)
    register(clock, alice(), key, kind=webauthn.SECURITY_KEY)
    first = webauthn.authentication_options(alice(), binding="b" * 43, at=clock.now())
    webauthn.authentication_options(alice(), binding="b" * 43, at=clock.now())
    assert WebAuthnChallenge.select().count() == 1
    assert WebAuthnChallenge.get().binding != "b" * 43
    assert not webauthn.verify_authentication(
        key.get(first), user=alice(), binding="b" * 43, at=clock.now()
    ).ok


def test_sc51_a_refused_answer_uses_the_challenge_up(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(None, binding="b" * 43, at=clock.now())
    key.origin = "http://evil.localhost:5000"
    assert not webauthn.verify_authentication(
        key.get(options), user=None, binding="b" * 43, at=clock.now()
    ).ok
    key.origin = ORIGIN
    assert not webauthn.verify_authentication(
        key.get(options), user=None, binding="b" * 43, at=clock.now()
    ).ok


# --- SC-52: credential binding


def test_sc52_another_users_key_is_refused_at_the_second_factor(ctx, clock):
    bobs = SoftKey(ORIGIN)
    register(clock, bob(), bobs)
    register(clock, alice(), SoftKey(ORIGIN))
    options = webauthn.authentication_options(alice(), binding="b" * 43, at=clock.now())
    outcome = webauthn.verify_authentication(
        bobs.get(options), user=alice(), binding="b" * 43, at=clock.now()
    )
    assert not outcome.ok and outcome.user is None
    assert WebAuthnCredential.get(WebAuthnCredential.user == bob()).last_used_at is None


def test_sc52_a_user_handle_that_is_not_the_users_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    key.user_handle = webauthn.user_handle(bob())
    outcome = sign_in(clock, key)
    assert not outcome.ok
    outcome = sign_in(clock, key, user=alice())
    assert not outcome.ok  # at the second factor too, when one is sent


def test_sc52_a_passkey_sign_in_without_a_user_handle_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    key.resident = False  # sends no userHandle
    assert not sign_in(clock, key).ok


def test_sc52_an_unknown_key_and_another_users_key_get_the_same_answer(ctx, clock):
    register(clock, bob(), bobs := SoftKey(ORIGIN))
    stranger = SoftKey(ORIGIN)
    stranger.rp_id, stranger.user_handle = "localhost", b"\0" * 64
    unknown = sign_in(clock, stranger, user=alice())
    other = sign_in(clock, bobs, user=alice())
    assert (unknown.ok, unknown.problem) == (other.ok, other.problem)
    assert (other.ok, other.problem) == (False, "key_not_accepted")


# --- SC-53: origins and RP ID


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:5001", "https://localhost:5000", "http://sub.localhost:5000", "null"],
)
def test_sc53_an_origin_not_listed_is_refused(ctx, clock, origin):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    key.origin = origin
    assert not sign_in(clock, key).ok
    assert not register(clock, alice(), SoftKey(origin), name="Other").ok


def test_sc53_cross_origin_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    key.cross_origin = True
    assert not sign_in(clock, key).ok
    other = SoftKey(ORIGIN)
    other.cross_origin = True
    assert not register(clock, alice(), other, name="Framed").ok


def test_sc53_a_key_made_for_another_rp_id_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    key.rp_id = "example.com"
    assert not sign_in(clock, key).ok


def test_sc53_the_rp_id_comes_from_settings_never_from_the_request(app, clock):
    with app.test_request_context("/", headers={"Host": "evil.example"}):
        options = webauthn.registration_options(
            alice(), "passkey", binding="b" * 43, at=clock.now()
        )
        assert options["rp"]["id"] == "localhost"


def test_sc53_the_relying_party_is_checked_at_start(tmp_path, clock):
    ok = make_app(tmp_path, clock, GATEWAY_PORTAL_URL="https://auth.example.test:8443")
    assert ok.config["WEBAUTHN_RP_ID"] == "auth.example.test"
    assert ok.config["WEBAUTHN_ORIGINS"] == ["https://auth.example.test:8443"]
    parent = {"GATEWAY_PORTAL_URL": "https://auth.example.test", "WEBAUTHN_RP_ID": "example.test"}
    assert create_app(test_config(tmp_path, clock, **parent)).config["WEBAUTHN_ORIGINS"] == [
        "https://auth.example.test"
    ]
    for bad in (
        {"WEBAUTHN_RP_ID": "127.0.0.1"},
        {"GATEWAY_PORTAL_URL": "https://auth.example.test", "WEBAUTHN_RP_ID": "other.test"},
        {"WEBAUTHN_RP_ID": "example.test", "WEBAUTHN_ORIGINS": ["https://evil.test"]},
        {"WEBAUTHN_RP_ID": "example.test", "WEBAUTHN_ORIGINS": ["http://app.example.test"]},
    ):
        with pytest.raises(ConfigurationError):
            create_app(test_config(tmp_path, clock, **bad))


# --- SC-54: user verification


def test_sc54_a_passkey_sign_in_without_user_verification_is_refused(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    key.uv = False
    outcome = sign_in(clock, key)
    assert not outcome.ok and outcome.user is None


def test_sc54_a_passkey_is_not_registered_without_user_verification(ctx, clock):
    outcome = register(clock, alice(), SoftKey(ORIGIN, uv=False))
    assert not outcome.ok and WebAuthnCredential.select().count() == 0


def test_sc54_a_security_key_cannot_sign_in_without_a_password(ctx, clock):
    key = SoftKey(ORIGIN, uv=False, resident=True)
    register(clock, alice(), key, kind=webauthn.SECURITY_KEY)
    assert not sign_in(clock, key).ok  # no user: a passwordless ceremony needs UV


# --- SC-55: the sign counter


def test_sc55_a_counter_that_stays_at_zero_is_accepted(ctx, clock):
    key = SoftKey(ORIGIN, backup=True)
    register(clock, alice(), key)
    assert sign_in(clock, key, counter=0).ok
    assert sign_in(clock, key, counter=0).ok


def test_sc55_a_counter_that_goes_backwards_is_refused_audited_and_told(mail_app, clock):
    with mail_app.test_request_context():
        key = SoftKey(ORIGIN)
        register(clock, alice(), key)
        assert sign_in(clock, key, counter=10).ok
        outcome = sign_in(clock, key, counter=9)
        assert not outcome.ok and outcome.clone
        stored = WebAuthnCredential.get()
        assert stored.clone_warning_at == clock.now() and stored.sign_count == 10
        assert audit_rows(mail_app, "webauthn_clone")[-1][1] == "refused"
        from standalone_mfa.core.models import Notice

        kinds = [n.kind for n in Notice.select().order_by(Notice.id)]
        assert kinds == ["webauthn_added", "webauthn_clone"]
        assert not sign_in(clock, key, counter=10).ok  # the same count again: refused


def test_sc55_a_key_used_between_reading_and_deciding_is_checked_again(ctx, clock):
    """A passkey sign-in reads the answer and checks its signature before its write
    transaction (`read_authentication`); a use of the same key in between (a clone's,
    with a higher count) must still make the stale answer a possible clone."""
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(None, binding="b" * 43, at=clock.now())
    answer = webauthn.read_authentication(key.get(options, counter=5), user=None)
    assert answer.verified is not None  # 5 > 0 as read
    assert sign_in(clock, key, counter=7).ok  # meanwhile
    outcome = webauthn.use_authentication(answer, user=None, binding="b" * 43, at=clock.now())
    assert not outcome.ok and outcome.clone
    assert WebAuthnCredential.get().sign_count == 7


def test_reading_an_answer_uses_nothing_up(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    options = webauthn.authentication_options(None, binding="b" * 43, at=clock.now())
    raw = key.get(options)
    webauthn.read_authentication(raw, user=None)
    assert WebAuthnChallenge.select().where(WebAuthnChallenge.user.is_null()).count() == 0
    assert WebAuthnCredential.get().last_used_at is None
    assert webauthn.verify_authentication(raw, user=None, binding="b" * 43, at=clock.now()).ok


def test_nothing_secret_reaches_the_audit_trail(ctx, clock):
    key = SoftKey(ORIGIN)
    register(clock, alice(), key)
    sign_in(clock, key)
    text = json.dumps([list(map(str, row)) for row in audit_rows(ctx)])
    assert b64(key.credential_id) not in text and b64(key.user_handle) not in text
