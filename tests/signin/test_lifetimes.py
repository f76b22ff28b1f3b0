"""`signin.lifetimes`: each lifetime rule is one function, and the row test (what a
request that loads a session uses) and the query condition (the account page's list,
`prune`) agree at every boundary."""

from __future__ import annotations

import datetime as dt

import pytest
from support.app import START

from standalone_mfa.core.db import db
from standalone_mfa.core.models import WebSession
from standalone_mfa.signin import lifetimes, state

IDLE = 1800
ABSOLUTE = 12 * 3600


def session_row(token, *, state_name=state.AUTHENTICATED, created, seen, since=None):
    return WebSession.create(
        token_hash=token,
        state=state_name,
        created_at=created,
        last_seen_at=seen,
        state_since=since or created,
    )


@pytest.mark.parametrize(
    ("created_ago", "seen_ago", "alive"),
    [
        (0, 0, True),
        (IDLE, IDLE, True),  # exactly at the idle limit: still alive
        (IDLE + 1, IDLE + 1, False),
        (ABSOLUTE, 0, True),
        (ABSOLUTE + 1, 0, False),  # busy all day: the absolute limit still ends it
    ],
)
def test_the_row_test_and_the_query_agree(app, created_ago, seen_ago, alive):
    with app.app_context():
        at = START
        row = session_row(
            "t",
            created=at - dt.timedelta(seconds=created_ago),
            seen=at - dt.timedelta(seconds=seen_ago),
        )
        assert lifetimes.session_alive(row, at) is alive
        selected = WebSession.select().where(lifetimes.live_sessions(at)).count() == 1
        assert selected is alive
        db.close()


@pytest.mark.parametrize(
    ("pending", "limit_key"),
    [
        (state.TOTP_SETUP, "MFA_SETUP_TIMEOUT"),
        (state.TOTP_VERIFY, "MFA_VERIFY_TIMEOUT"),
        (state.RECOVERY_CODES, "MFA_SETUP_TIMEOUT"),
    ],
)
def test_a_pending_step_expires_at_its_own_limit_in_both_forms(app, pending, limit_key):
    with app.app_context():
        limit = app.config[limit_key]
        since = START - dt.timedelta(seconds=limit)
        row = session_row("p", state_name=pending, created=since, seen=START, since=since)
        assert not lifetimes.pending_expired(row, START)
        assert WebSession.select().where(lifetimes.expired_pending(START)).count() == 0
        later = START + dt.timedelta(seconds=1)
        assert lifetimes.pending_expired(row, later)
        assert WebSession.select().where(lifetimes.expired_pending(later)).count() == 1


def test_a_signed_in_session_has_no_pending_deadline(app):
    with app.app_context():
        assert lifetimes.pending_deadline(state.AUTHENTICATED, START) is None
        row = session_row("a", created=START - dt.timedelta(days=1), seen=START)
        assert not lifetimes.pending_expired(row, START)
