"""SC-31: the time of the answer does not tell a wrong username from a wrong password.

A security property, not a speed target: nothing here says how fast a sign-in is, only
that the two answers take the same time. It uses the default password hash (scrypt),
whose cost is what an attacker would time, and compares medians of 200 requests of
each kind, interleaved (alternating which goes first) so that load on the machine
falls on both alike.
"""

from __future__ import annotations

import statistics
import time

import pytest
from support.app import make_app
from support.pages import csrf_from

from standalone_mfa.core.db import db
from standalone_mfa.core.models import AddressThrottle, PasswordThrottle

# 200 sign-ins with scrypt, twice: a minute on a quiet machine (not in `make check`).
pytestmark = pytest.mark.slow

ROUNDS = 200
TOLERANCE = 0.20


def test_sc31_unknown_user_and_wrong_password_take_the_same_time(tmp_path, clock):
    app = make_app(tmp_path, clock, PASSWORD_HASH_METHOD="scrypt")
    clients = {kind: app.test_client() for kind in ("unknown user", "wrong password")}
    tokens = {
        kind: csrf_from(c.get("/login").get_data(as_text=True)) for kind, c in clients.items()
    }
    usernames = {"unknown user": "nobody", "wrong password": "alice"}

    def attempt(kind) -> float:
        data = {
            "username": usernames[kind],
            "password": "not the password",
            "csrf_token": tokens[kind],
        }
        started = time.perf_counter()
        response = clients[kind].post("/login", data=data)
        elapsed = time.perf_counter() - started
        page = response.get_data(as_text=True)
        assert "The username or password is not right." in page, kind
        return elapsed

    timings = {kind: [] for kind in clients}
    with app.app_context():
        for kind in clients:  # warm-up: the dummy hash is made once, on first use
            attempt(kind)
        for round_no in range(ROUNDS):
            kinds = list(clients) if round_no % 2 else list(reversed(clients))
            for kind in kinds:
                # Only the hash is timed here: the per-username back-off (which treats
                # both kinds alike) would otherwise answer early after 10 failures.
                PasswordThrottle.delete().execute()
                AddressThrottle.delete().execute()  # and the client address's
                timings[kind].append(attempt(kind))
        db.close()

    unknown = statistics.median(timings["unknown user"])
    wrong = statistics.median(timings["wrong password"])
    assert abs(unknown - wrong) <= TOLERANCE * max(unknown, wrong), (unknown, wrong)
