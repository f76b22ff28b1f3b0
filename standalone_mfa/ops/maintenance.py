"""Housekeeping: deleting rows that can no longer be used, so that no table grows
without bound. Run by `flask --app standalone_mfa prune` (from cron).

`prune(now)` returns how many rows of each kind it deleted; a feature with its own
expiring rows adds one line to it. It deletes only what the app would already refuse:
a session or pending login past its limit, password counters quiet for a day, client
address counters whose hour is over, trusted browsers past their day, email
confirmation links used or past their time, app passwords revoked a month ago, and
passkey ceremonies' challenges past their time.
"""

from __future__ import annotations

import datetime as dt

import peewee

from ..core import audit
from ..core.db import write_transaction
from ..core.models import AddressThrottle, EmailConfirmation, PasswordThrottle, User, WebSession
from ..factors import app_passwords, devices, throttle, trusted_browsers, webauthn
from ..notices import outbox
from ..signin import lifetimes, setup_secret

# A password counter is kept this long after its last failure. Far longer than the
# longest back-off (`BACKOFF_MAX_SECONDS`), so forgetting a count never gives a guesser
# more tries than waiting out the back-off would: after a quiet day, 10 free tries.
PASSWORD_THROTTLE_RETENTION = dt.timedelta(days=1)

# A sent notice is kept this long (for `mail send --dry-run` and questions), then its
# facts (address, browser) go with it. Unsent ones are never pruned: nothing is lost.
SENT_NOTICES_KEPT = dt.timedelta(days=30)

# A revoked app password stays on its owner's list this long ("Revoked on …"), so a
# calendar that stopped working can be explained; it never works again meanwhile.
REVOKED_APP_PASSWORDS_KEPT = dt.timedelta(days=30)


def prune(now: dt.datetime) -> dict[str, int]:
    """Delete expired rows; how many of each kind, in the order they were deleted."""
    return {
        "pending_logins": _expired_pending_logins(now),
        "sessions": _expired_sessions(now),
        "password_throttles": _stale_password_throttles(now),
        "remembered_devices": devices.expired(now),
        "address_throttles": _finished_address_windows(now),
        "trusted_browsers": trusted_browsers.expired(now),
        "sent_notices": outbox.prune_sent(now - SENT_NOTICES_KEPT),
        "email_links": _spent_email_links(now),
        "revoked_app_passwords": app_passwords.prune_revoked(now - REVOKED_APP_PASSWORDS_KEPT),
        "passkey_challenges": webauthn.prune_challenges(now),
        "set_up_secrets": setup_secret.clear_expired(now),
    }


def _expired_pending_logins(now: dt.datetime) -> int:
    """A set-up or code step older than its limit (from when it began, as the guard
    judges it): the next request would only send the browser back to the password.
    Each is audited as the guard audits one it finds (`pending_expired`), so the
    person's Account security page says their sign-in expired whichever came first."""
    with write_transaction():
        expired = list(
            WebSession.select(WebSession, User)
            .join(User, peewee.JOIN.LEFT_OUTER)
            .where(lifetimes.expired_pending(now))
            .order_by(WebSession.state_since)
        )
        for row in expired:
            client = audit.Client(ip=row.ip, user_agent=row.user_agent)
            audit.record(
                "pending_expired", "ended", user=row.user, detail=row.state, client=client
            )
        ids = [row.id for row in expired]
        return WebSession.delete().where(WebSession.id.in_(ids)).execute() if ids else 0


def _expired_sessions(now: dt.datetime) -> int:
    """Any session past the idle or the absolute limit (what `sessions.load` refuses)."""
    return WebSession.delete().where(~lifetimes.live_sessions(now)).execute()


def _stale_password_throttles(now: dt.datetime) -> int:
    """Wrong-password counters (one per username tried, real or not) with no failure
    for a day: their back-off ended long ago."""
    cutoff = now - PASSWORD_THROTTLE_RETENTION
    return PasswordThrottle.delete().where(PasswordThrottle.last_failure_at < cutoff).execute()


def _finished_address_windows(now: dt.datetime) -> int:
    """Client-address counters whose hour is over: the next attempt starts a new one."""
    cutoff = now - throttle.ADDRESS_WINDOW
    return AddressThrottle.delete().where(AddressThrottle.window_started_at <= cutoff).execute()


def _spent_email_links(now: dt.datetime) -> int:
    """Confirmation links already used or past their time: `accounts.emails` refuses
    them; the pending address they were for stays until the user or an administrator
    changes it."""
    return (
        EmailConfirmation.delete()
        .where(EmailConfirmation.used_at.is_null(False) | (EmailConfirmation.expires_at <= now))
        .execute()
    )
