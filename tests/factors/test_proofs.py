"""`factors.proofs`: the one way a password, a code and a recovery code are proved,
called directly: the attempt is counted before the secret is looked at, a code's
step is used once, success resets the counter, and the caller's changes commit with
the proof's or not at all."""

from __future__ import annotations

import pyotp
import pytest
from support.app import PASSWORD
from support.oath import wrong_code

from standalone_mfa.core.audit import Client
from standalone_mfa.core.db import write_transaction
from standalone_mfa.core.models import MfaThrottle, PasswordThrottle, Setting, TotpCredential
from standalone_mfa.directory.users import find_user
from standalone_mfa.factors import proofs, recovery, throttle, totp

CLIENT = Client("192.0.2.1", "pytest")


@pytest.fixture
def alice(app):
    """alice with an authenticator; yields (user, secret) inside an app context."""
    with app.app_context():
        user = find_user("alice")
        secret = totp.new_secret()
        with write_transaction():
            totp.enrol(user, secret, step=0)
        yield user, secret


def code_now(app, secret, steps=0):
    clock = app.extensions["standalone_mfa.clock"]
    return pyotp.TOTP(secret).at(clock.timestamp() + 30 * steps)


def credential(user):
    return TotpCredential.get(TotpCredential.user == user)


def failures(user):
    row = MfaThrottle.get_or_none(MfaThrottle.user == user)
    return row.failures if row else 0


def test_a_right_code_is_used_once_and_resets_the_counter(app, alice):
    user, secret = alice
    with proofs.code(user, "000000", credential=credential(user), client=CLIENT) as proof:
        assert not proof.ok
    assert failures(user) == 1
    code = code_now(app, secret)
    with proofs.code(user, code, credential=credential(user), client=CLIENT) as proof:
        assert proof.ok and proof.step is not None
    assert failures(user) == 0
    with proofs.code(user, code, credential=credential(user), client=CLIENT) as replay:
        assert not replay.ok and replay.problem == "wrong_code"
    assert failures(user) == 1  # a replay is a counted failure


def test_sc07_a_malformed_code_is_still_a_counted_attempt(app, alice):
    user, _secret = alice
    for raw in (None, "", "12345", "abcdef", "1" * 65):
        with proofs.code(user, raw, credential=credential(user), client=CLIENT) as proof:
            assert not proof.ok and proof.message() == proofs.messages.text("wrong_code")
    assert failures(user) == 5


def test_sc08_once_throttled_the_code_is_not_even_looked_at(app, alice, monkeypatch):
    user, secret = alice
    backoff = app.config["MFA_BACKOFF_AFTER"]
    for _ in range(backoff):
        with proofs.code(user, "000000", credential=credential(user), client=CLIENT):
            pass
    looked_at = []
    monkeypatch.setattr(totp, "check_code", lambda *a: looked_at.append(a))
    with proofs.code(
        user, code_now(app, secret), credential=credential(user), client=CLIENT
    ) as proof:
        assert proof.throttled and proof.problem == "code_wait" and proof.retry_after == 1
    assert looked_at == [] and failures(user) == backoff


def test_a_failure_in_the_callers_work_rolls_back_the_used_step(app, alice):
    """The proof and what the caller does with it commit together: a caller that fails
    after a right code leaves the step unused (and the counter as it was)."""
    user, secret = alice
    code = code_now(app, secret)
    caller_failed = pytest.raises(RuntimeError)
    with (
        caller_failed,
        proofs.code(user, code, credential=credential(user), client=CLIENT) as proof,
    ):
        assert proof.ok
        Setting.create(key="written_by_the_caller", value="x")
        raise RuntimeError("the caller's change failed")
    assert credential(user).last_used_step == 0
    assert Setting.get_or_none(Setting.key == "written_by_the_caller") is None
    with proofs.code(user, code, credential=credential(user), client=CLIENT) as again:
        assert again.ok


def test_a_pending_secret_is_matched_but_its_step_left_to_the_caller(app, alice):
    user, _secret = alice
    pending = totp.new_secret()
    with proofs.code(user, code_now(app, pending), secret=pending, client=CLIENT) as proof:
        assert proof.ok and proof.step is not None
    assert credential(user).last_used_step == 0  # the saved authenticator is untouched


def test_drift_is_reported_but_the_code_refused(app, alice):
    """A phone two minutes slow: both codes are refused; the second one, at the same
    offset (±1 step) as the first, is explained."""
    user, secret = alice
    memory = {}
    early = code_now(app, secret, steps=-4)  # two minutes ago
    with proofs.code(
        user, early, credential=credential(user), client=CLIENT, drift_memory=memory
    ) as proof:
        assert not proof.ok and proof.drift == -4
        assert proof.message() == proofs.messages.text("wrong_code")
    later = code_now(app, secret, steps=-5)
    with proofs.code(
        user, later, credential=credential(user), client=CLIENT, drift_memory=memory
    ) as proof:
        assert not proof.ok and proof.drift == -5
        assert "2 minutes ago" in proof.message()
    assert failures(user) == 2


# --- SC-44: the clock-drift hint needs two consecutive failed codes at one offset


def try_code(user, code, memory):
    with proofs.code(
        user, code, credential=credential(user), client=CLIENT, drift_memory=memory
    ) as proof:
        return proof


def test_sc44_a_single_future_code_gets_the_generic_message(app, alice):
    user, secret = alice
    clock = app.extensions["standalone_mfa.clock"]
    memory = {}
    ahead = code_now(app, secret, steps=4)  # two minutes from now
    proof = try_code(user, ahead, memory)
    assert not proof.ok and proof.drift == 4 and not proof.drift_confirmed
    assert proof.message() == proofs.messages.text("wrong_code")
    assert "from now" not in proof.message()
    # Without the caller's memory there is never a hint, not even for a second code.
    for _ in range(2):
        alone = try_code(user, ahead, None)
        assert alone.drift == 4 and alone.message() == proofs.messages.text("wrong_code")
    # Normal TOTP: once its step comes, the code is right. The first answer said nothing.
    clock.advance(4 * 30)
    assert try_code(user, ahead, memory).ok
    assert proofs.DRIFT_KEY not in memory


def test_sc44_two_codes_from_a_clock_three_minutes_fast_get_the_hint(app, alice):
    user, secret = alice
    clock = app.extensions["standalone_mfa.clock"]
    memory = {}
    first = try_code(user, code_now(app, secret, steps=6), memory)
    assert first.drift == 6 and first.message() == proofs.messages.text("wrong_code")
    clock.advance(30)  # the phone's next code, still three minutes ahead
    second = try_code(user, code_now(app, secret, steps=6), memory)
    assert not second.ok and second.drift_confirmed
    assert second.message().startswith("This code will only be valid in about 3 minutes.")
    # A third one from that phone still gets it; the hint never lets a code in.
    clock.advance(30)
    third = try_code(user, code_now(app, secret, steps=7), memory)
    assert not third.ok and third.drift_confirmed
    assert failures(user) == 3


def test_sc44_two_codes_at_different_offsets_get_no_hint(app, alice):
    user, secret = alice
    memory = {}
    for steps in (6, -4, 6, 3):
        proof = try_code(user, code_now(app, secret, steps=steps), memory)
        assert proof.drift == steps and not proof.drift_confirmed
        assert proof.message() == proofs.messages.text("wrong_code")


@pytest.mark.parametrize("between", ["right code", "wrong code", "malformed code", "recovery"])
def test_sc44_a_code_without_drift_in_between_forgets_the_first(app, alice, between):
    user, secret = alice
    clock = app.extensions["standalone_mfa.clock"]
    memory = {}
    assert try_code(user, code_now(app, secret, steps=6), memory).drift == 6
    assert memory[proofs.DRIFT_KEY] == 6
    if between == "recovery":
        with write_transaction():
            codes = recovery.replace_codes(user)
        with proofs.recovery_code(user, codes[0], client=CLIENT, drift_memory=memory) as proof:
            assert proof.ok
    else:
        code = {
            "right code": code_now(app, secret),
            "wrong code": wrong_code(secret, clock),
            "malformed code": "12345",
        }[between]
        assert try_code(user, code, memory).ok is (between == "right code")
    assert proofs.DRIFT_KEY not in memory
    clock.advance(30)
    again = try_code(user, code_now(app, secret, steps=6), memory)
    assert again.drift == 6 and not again.drift_confirmed
    assert again.message() == proofs.messages.text("wrong_code")


def test_sc44_a_throttled_attempt_neither_hints_nor_forgets(app, alice):
    """While throttled no code is looked at: no hint, and the memory stays as it was."""
    user, secret = alice
    clock = app.extensions["standalone_mfa.clock"]
    memory = {}
    for _ in range(app.config["MFA_BACKOFF_AFTER"] - 1):
        try_code(user, wrong_code(secret, clock), memory)
    assert try_code(user, code_now(app, secret, steps=6), memory).drift == 6
    refused = try_code(user, code_now(app, secret, steps=6), memory)
    assert refused.throttled and refused.drift is None and not refused.drift_confirmed
    assert "This code was valid" not in refused.message()
    assert memory[proofs.DRIFT_KEY] == 6
    clock.advance(30)  # past the back-off
    confirmed = try_code(user, code_now(app, secret, steps=6), memory)
    assert not confirmed.throttled and confirmed.drift_confirmed


def test_a_recovery_code_is_spent_once(app, alice):
    user, _secret = alice
    with write_transaction():
        codes = recovery.replace_codes(user)
    with proofs.recovery_code(user, codes[3], client=CLIENT) as proof:
        assert proof.ok
    with proofs.recovery_code(user, codes[3], client=CLIENT) as again:
        assert not again.ok and again.problem == "wrong_recovery_code"
    assert failures(user) == 1


def test_sc07_password_is_claimed_before_the_hash_and_reset_on_success(app, monkeypatch):
    with app.app_context():
        user = find_user("alice")
        with proofs.password("alice", user, "wrong") as proof:
            assert not proof.ok and proof.problem == "wrong_password"
        assert throttle.password_failures("alice") == 1
        with proofs.password("alice", user, PASSWORD) as proof:
            assert proof.ok
        assert throttle.password_failures("alice") == 0
        assert PasswordThrottle.select().count() == 0  # nothing kept for a right password
        checked = []
        monkeypatch.setattr(
            proofs.passwords, "check_password", lambda *a: checked.append(a) or False
        )
        for _ in range(app.config["PASSWORD_BACKOFF_AFTER"]):
            with proofs.password("alice", user, "wrong"):
                pass
        with proofs.password("alice", user, PASSWORD) as proof:
            assert proof.throttled and proof.problem == "password_wait"
        assert len(checked) == app.config["PASSWORD_BACKOFF_AFTER"]  # not the last one


def test_an_unknown_username_is_counted_like_a_known_one(app):
    with app.app_context():
        with proofs.password("nobody", None, PASSWORD) as proof:
            assert not proof.ok and proof.problem == "wrong_password"
        assert throttle.password_failures("nobody") == 1


def test_sc08_a_right_code_claims_and_resets_in_one_compare_and_set(app, alice):
    """The code is checked once the counter allows the attempt, and the one
    compare-and-set writes the outcome: a right code found the counter at n and
    leaves 0; a stale count costs a retry, never a free attempt."""
    user, secret = alice
    for _ in range(2):
        with proofs.code(user, "000000", credential=credential(user), client=CLIENT):
            pass
    stale = MfaThrottle.get(MfaThrottle.user == user)  # read at 2, as a session load would
    with proofs.code(user, "000000", credential=credential(user), client=CLIENT):
        pass  # meanwhile another attempt made it 3
    with proofs.code(
        user, code_now(app, secret), credential=credential(user), client=CLIENT,
        throttle_row=stale,
    ) as proof:  # fmt: skip
        assert proof.ok
    assert failures(user) == 0


def test_sc08_a_burst_cannot_carry_a_right_code_past_the_lock(app, alice):
    """A right code whose throttle row was read before a burst of wrong ones locked
    the account is refused: its compare-and-set sees the new count."""
    user, secret = alice
    stale = MfaThrottle.get_or_none(MfaThrottle.user == user)
    MfaThrottle.insert(user=user, failures=app.config["MFA_LOCK_AFTER"]).execute()
    with proofs.code(
        user, code_now(app, secret), credential=credential(user), client=CLIENT,
        throttle_row=stale,
    ) as proof:  # fmt: skip
        assert not proof.ok and proof.locked
    assert credential(user).last_used_step == 0  # the step was not used


def test_sc05_a_replay_after_failures_counts_one_more(app, alice):
    user, secret = alice
    code = code_now(app, secret)
    with proofs.code(user, code, credential=credential(user), client=CLIENT) as proof:
        assert proof.ok
    with proofs.code(user, "000000", credential=credential(user), client=CLIENT):
        pass
    with proofs.code(user, code, credential=credential(user), client=CLIENT) as replay:
        assert replay.replay and replay.failures == 2
    assert failures(user) == 2
