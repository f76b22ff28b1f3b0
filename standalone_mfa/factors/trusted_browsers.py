"""Trusted browsers (OWASP's "device cookies"): a browser that completed a sign-in as a
user gets a cookie whose password attempts for that user are counted on their own
counter (`throttle.begin_trusted_password_attempt`), so a stranger who knows only the
username can never lock the user out of a browser they have used before. It skips
nothing: the password and the code are still asked for. Not the remembered device.

The cookie holds a random 256-bit token only (unforgeable without the database, so no
signature is needed); the server keeps its hash, bound to the user and to the password
hash of that moment. A password change, an administrator's reset, "sign out
everywhere" or "forget devices" revokes it on the server, whatever the browser keeps.
"""

from __future__ import annotations

import datetime as dt

from ..core import crypto
from ..core.clock import now
from ..core.db import Prepared
from ..core.models import TrustedBrowser

MAX_TOKEN_LENGTH = 128


def _fingerprint(user) -> str:
    # A password change gives a new hash, so every browser trusted before it is not.
    return crypto.hash_token(user.password_hash)


def find(user, token: str | None) -> TrustedBrowser | None:
    """The live trusted browser of `user` whose cookie holds `token`, or None (no
    cookie, a forged, expired or revoked one, another user's, or the password changed
    since)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    # Looked up for an unknown username too: the same work whether the account exists.
    found = _FIND.run(token_hash=crypto.hash_token(token))
    browser = found[0] if found else None
    if (
        browser is None
        or user is None
        or browser.user_id != user.id
        or browser.password_fingerprint != _fingerprint(user)
        or browser.expires_at <= now()
    ):
        return None
    return browser


def trust(user, token: str | None, *, days: int) -> str:
    """This browser completed a sign-in as `user`: the token for its cookie, valid for
    `days` from now. The token it already holds for `user` is renewed; otherwise (none,
    or another user's) a new one is made."""
    at = now()
    expires_at = at + dt.timedelta(days=days)
    fingerprint = _fingerprint(user)
    # One conditional UPDATE renews it if it is live and this user's (what `find`
    # asks); none renewed, a new one is made.
    if token and len(token) <= MAX_TOKEN_LENGTH:
        renewed = _RENEW.run(
            token_hash=crypto.hash_token(token),
            user=user.id,
            fingerprint=fingerprint,
            at=at,
            expires_at=expires_at,
        )
        if renewed:
            return token
    token = crypto.new_token()
    _INSERT.run(
        user=user.id,
        token_hash=crypto.hash_token(token),
        fingerprint=fingerprint,
        at=at,
        expires_at=expires_at,
    )
    return token


# The code step trusts its browser in its own transaction: these are on the hot path
# (see `core.db.Prepared`).
_FIND = Prepared(
    lambda slot: (
        TrustedBrowser.select().where(TrustedBrowser.token_hash == slot("token_hash")).limit(1)
    )
)
_RENEW = Prepared(
    lambda slot: TrustedBrowser.update(
        last_used_at=slot("at", TrustedBrowser.last_used_at),
        expires_at=slot("expires_at", TrustedBrowser.expires_at),
    ).where(
        (TrustedBrowser.token_hash == slot("token_hash"))
        & (TrustedBrowser.user == slot("user"))
        & (TrustedBrowser.password_fingerprint == slot("fingerprint"))
        & (TrustedBrowser.expires_at > slot("at", TrustedBrowser.expires_at))
    )
)
_INSERT = Prepared(
    lambda slot: TrustedBrowser.insert(
        user=slot("user"),
        token_hash=slot("token_hash"),
        password_fingerprint=slot("fingerprint"),
        created_at=slot("at", TrustedBrowser.created_at),
        last_used_at=slot("at", TrustedBrowser.last_used_at),
        expires_at=slot("expires_at", TrustedBrowser.expires_at),
    )
)


def forget_all(user) -> int:
    """Revoke every trusted browser of `user` (reset, password change, sign-out
    everywhere, forget devices); how many there were."""
    return TrustedBrowser.delete().where(TrustedBrowser.user == user).execute()


def count(user) -> int:
    return (
        TrustedBrowser.select()
        .where((TrustedBrowser.user == user) & (TrustedBrowser.expires_at > now()))
        .count()
    )


def expired(at: dt.datetime) -> int:
    """Delete trusted browsers past their day (for `maintenance.prune`)."""
    return TrustedBrowser.delete().where(TrustedBrowser.expires_at <= at).execute()
