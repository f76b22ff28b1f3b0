"""What administrators do to accounts, besides creating one (`users`), resetting a
second factor (`reset`), unlocking one (`throttle.unlock`) and changing its groups
(`groups`): the list of users with their MFA status and groups, granting and
revoking administrator rights (never leaving the site without an administrator),
and ending a user's sessions. Every change is audited
with the actor, the target and the outcome."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from peewee import fn

from ..core import audit
from ..core.audit import NO_CLIENT, Client
from ..core.db import is_sqlite, write_transaction
from ..core.models import AuditEvent, MfaThrottle, TotpCredential, User, WebAuthnCredential
from ..core.pagination import PER_PAGE, Page, paginate
from ..directory import groups, users
from ..factors import throttle, trusted_browsers
from ..signin import sessions

# What `set_admin` came to.
CHANGED = "ok"
UNCHANGED = "unchanged"
LAST_ADMIN = "last_admin"


@dataclass(frozen=True)
class UserRow:
    """One line of the Users page (and of `GET /api/v1/users`)."""

    username: str
    is_admin: bool
    mfa_set_up_at: dt.datetime | None  # None: no authenticator
    last_sign_in: dt.datetime | None  # the last accepted password (from the audit log)
    code_failures: int
    code_throttle: str  # throttle.describe(): ok, failures, throttled or locked
    password_failures: int = 0
    password_throttled: bool = False  # wrong passwords: each new try waits
    groups: tuple[str, ...] = ()  # sorted, as `groups.groups_of`
    email: str | None = None  # the confirmed address notices go to
    pending_email: str | None = None  # one the user asked for, waiting for its link
    keys: int = 0  # passkeys and security keys

    @property
    def enrolled(self) -> bool:
        return self.mfa_set_up_at is not None

    @property
    def resettable(self) -> bool:
        """An authenticator app or a key: what `mfa reset` removes."""
        return self.enrolled or self.keys > 0

    def as_json(self) -> dict:
        return {
            "username": self.username,
            "is_admin": self.is_admin,
            "enrolled": self.enrolled,
            "confirmed_at": _iso(self.mfa_set_up_at),
            "last_sign_in": _iso(self.last_sign_in),
            "code_failures": self.code_failures,
            "throttle": self.code_throttle,
            "password_failures": self.password_failures,
            "password_throttled": self.password_throttled,
            "groups": list(self.groups),
            "email": self.email,
            "email_pending": self.pending_email,
            "webauthn_keys": self.keys,
        }


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() + "Z" if at else None


def list_users(
    search: str = "", page: int = 1, per_page: int = PER_PAGE, *, clamp: bool = False
) -> Page:
    """Users by name, optionally only those whose name contains `search`."""
    query = User.select().order_by(User.username)
    term = users.normalize_username(search)
    if term:
        query = query.where(User.username.contains(term))
    result = paginate(query, page, per_page, clamp=clamp)
    return Page(_rows(result.items), result.page, result.per_page, result.total)


def row_for(user: User) -> UserRow:
    return _rows([user])[0]


def _rows(page_of_users: list[User]) -> list[UserRow]:
    """The status columns of a page of users, in six queries whatever its size."""
    ids = [user.id for user in page_of_users]
    names = [user.username for user in page_of_users]
    set_up = dict(
        TotpCredential.select(TotpCredential.user, TotpCredential.confirmed_at)
        .where(TotpCredential.user.in_(ids))
        .tuples()
    )
    failures = dict(
        MfaThrottle.select(MfaThrottle.user, MfaThrottle.failures)
        .where(MfaThrottle.user.in_(ids))
        .tuples()
    )
    last_sign_in = dict(
        AuditEvent.select(AuditEvent.username, fn.MAX(AuditEvent.at))
        .where(
            AuditEvent.username.in_(names)
            & (AuditEvent.event == "login")
            & (AuditEvent.outcome == "ok")
        )
        .group_by(AuditEvent.username)
        .tuples()
    )
    keys = dict(
        WebAuthnCredential.select(WebAuthnCredential.user, fn.COUNT(WebAuthnCredential.id))
        .where(WebAuthnCredential.user.in_(ids))
        .group_by(WebAuthnCredential.user)
        .tuples()
    )
    password_failures = throttle.password_failures_of(names)
    memberships = groups.groups_of_users(ids)
    return [
        UserRow(
            username=user.username,
            is_admin=user.is_admin,
            mfa_set_up_at=set_up.get(user.id),
            last_sign_in=last_sign_in.get(user.username),
            code_failures=failures.get(user.id, 0),
            code_throttle=throttle.describe(failures.get(user.id, 0)),
            password_failures=password_failures.get(user.username, 0),
            password_throttled=(
                password_failures.get(user.username, 0) >= throttle.policy().password_backoff_after
            ),
            groups=memberships.get(user.id, ()),
            email=user.email,
            pending_email=user.pending_email,
            keys=keys.get(user.id, 0),
        )
        for user in page_of_users
    ]


def set_admin(user: User, is_admin: bool, *, actor: str, client: Client = NO_CLIENT) -> str:
    """Grant or revoke administrator rights. The last administrator is never revoked:
    the administrators' rows are locked first (PostgreSQL; SQLite's write lock covers
    it), so two administrators revoking each other at once cannot both succeed."""
    event = "admin_granted" if is_admin else "admin_revoked"
    with write_transaction():
        admins = User.select(User.id).where(User.is_admin)
        if not is_sqlite():
            admins = admins.for_update()
        admin_ids = {row.id for row in admins}
        if (user.id in admin_ids) == is_admin:
            outcome = UNCHANGED
        elif not is_admin and admin_ids <= {user.id}:
            outcome = LAST_ADMIN
        else:
            User.update(is_admin=is_admin).where(User.id == user.id).execute()
            outcome = CHANGED
        audit.record(
            event,
            "refused" if outcome == LAST_ADMIN else outcome,
            user=user,
            actor=actor,
            detail="last administrator" if outcome == LAST_ADMIN else None,
            client=client,
        )
    return outcome


def end_sessions(user: User, *, actor: str, client: Client = NO_CLIENT) -> int:
    """Sign a user out everywhere (a stolen laptop, a departing colleague); no browser
    of theirs stays trusted."""
    with write_transaction():
        ended = sessions.end_sessions_of(user)
        trusted_browsers.forget_all(user)
        audit.record(
            "session_revoked",
            "ok",
            user=user,
            actor=actor,
            detail=f"{ended} sessions",
            client=client,
        )
    return ended
