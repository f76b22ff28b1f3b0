"""factors/passwords: scrypt by default, and an unknown user costs the same one hash
check as a wrong password."""

from __future__ import annotations

from support.app import make_app

from standalone_mfa import create_app


def test_default_password_hash_is_scrypt(tmp_path, clock):
    app = make_app(tmp_path, clock, PASSWORD_HASH_METHOD="scrypt")
    from standalone_mfa.core.models import User

    with app.app_context():
        assert User.get(User.username == "alice").password_hash.startswith("scrypt:")
    assert create_app.__module__  # the default config is scrypt too
    from standalone_mfa.core.config import DEFAULTS

    assert DEFAULTS["PASSWORD_HASH_METHOD"] == "scrypt"


def test_wrong_username_costs_one_password_hash_check_like_a_wrong_password(
    app, new_browser, monkeypatch
):
    from standalone_mfa.factors import passwords

    methods = []
    real_check = passwords.check_password_hash

    def counting_check(pwhash, password):
        methods.append(pwhash.split("$", 1)[0])
        return real_check(pwhash, password)

    monkeypatch.setattr(passwords, "check_password_hash", counting_check)
    pages = []
    for username in ("alice", "nobody-here"):
        person = new_browser()
        person.get("/login")
        response = person.post("/login", {"username": username, "password": "wrong password"})
        pages.append(response.get_data(as_text=True).split('name="csrf_token"')[0])
    # One check each, with the same hash method and cost: the same work either way.
    assert methods == [methods[0], methods[0]]
    assert methods[0] == app.config["PASSWORD_HASH_METHOD"]
    assert pages[0] == pages[1]
    assert "The username or password is not right." in pages[0]
