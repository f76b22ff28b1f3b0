"""Who must use MFA, and when: the one decision that the sign-in branch at
`password_ok` (`state.password_accepted`), the request guard and the gateway's check
all follow, so that they cannot disagree.

`decide` is pure: the administrator's choice (`Policy`: the method, everyone or some
groups, the grace period) and what is known of the user give a `Requirement`:

- METHOD_OFF: the password alone signs in because the method is Disabled;
- NOT_REQUIRED: the password alone signs in (the user is outside the scope and has
  no authenticator);
- CODE: the user has an authenticator and the method is TOTP: a code at every sign-in,
  in the scope or not (a voluntary set-up counts as much as a required one);
- POSTPONABLE: set-up is required but the user's grace lasts until `deadline`: the
  set-up page offers "Set up later";
- SET_UP: set-up is required now.

Deadlines are kept on the server (`User.mfa_required_since`, `User.mfa_deadline`): set
at the first sign-in that required set-up (or, for a session signed in before the
user was put in the scope, its first request after: `requirement_kept`), cleared when
the user sets up. A deadline is
never recounted from a later sign-in: leaving the scope and coming back does not give a
new grace, and a grace shortened by the administrator counts at once (the stored
deadline and the first required sign-in plus today's grace: the earlier wins). After an
administrator's reset (`User.mfa_reset_at`) there is no grace: the reset asked for a
new set-up, and the password alone must not let the account in meanwhile.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from ..core.db import write_transaction
from ..core.models import User
from ..directory import groups, settings
from ..factors import totp, webauthn

NOT_REQUIRED = "not_required"
CODE = "code"
POSTPONABLE = "postponable"
SET_UP = "set_up"
METHOD_OFF = "disabled"  # NOT_REQUIRED because the method itself is off (the seed's branch)
OUTCOMES = (METHOD_OFF, NOT_REQUIRED, CODE, POSTPONABLE, SET_UP)


@dataclass(frozen=True)
class Policy:
    """The administrator's choice, as stored in the settings."""

    method: str = settings.DEFAULT_MFA_METHOD
    required_for: str = settings.EVERYONE
    groups: frozenset[str] = frozenset()
    grace_days: int = 0

    def covers(self, user_groups) -> bool:
        """Whether a member of `user_groups` must use MFA."""
        if self.required_for == settings.EVERYONE:
            return True
        return not self.groups.isdisjoint(user_groups)


@dataclass(frozen=True)
class Requirement:
    outcome: str  # one of OUTCOMES
    deadline: dt.datetime | None = None  # POSTPONABLE (and SET_UP once one passed)

    @property
    def password_alone(self) -> bool:
        """Whether a session signed in with the password alone may stay signed in."""
        return self.outcome in (METHOD_OFF, NOT_REQUIRED, POSTPONABLE)

    def days_left(self, at: dt.datetime) -> int:
        """Whole days (rounded up) until the deadline: "1 day left" on its last day."""
        if self.deadline is None or self.deadline <= at:
            return 0
        return math.ceil((self.deadline - at) / dt.timedelta(days=1))


def effective_deadline(
    policy: Policy, required_since: dt.datetime | None, stored: dt.datetime | None
) -> dt.datetime | None:
    """The stored deadline, or the first required sign-in plus today's grace if that
    is earlier (a shortened grace counts even before the bulk update reached a row)."""
    if required_since is None or stored is None:
        return stored
    return min(stored, required_since + dt.timedelta(days=policy.grace_days))


def decide(
    policy: Policy,
    *,
    user_groups,
    enrolled: bool,
    at: dt.datetime,
    required_since: dt.datetime | None = None,
    deadline: dt.datetime | None = None,
    reset: bool = False,
) -> Requirement:
    """What `policy` asks of a user at `at` (see the module's docstring). A user who
    must set up and has no deadline yet is within a grace that starts now."""
    if policy.method == settings.DISABLED:
        return Requirement(METHOD_OFF)
    if enrolled:
        return Requirement(CODE)
    if not policy.covers(user_groups):
        return Requirement(NOT_REQUIRED)
    if reset:
        return Requirement(SET_UP)
    if required_since is None:  # this sign-in is the first to require it
        required_since, deadline = at, at + dt.timedelta(days=policy.grace_days)
    deadline = effective_deadline(policy, required_since, deadline)
    if deadline is not None and deadline > at:
        return Requirement(POSTPONABLE, deadline)
    return Requirement(SET_UP, deadline)


# --- Loading the inputs -------------------------------------------------------------


def current() -> Policy:
    """The administrator's choice as stored now."""
    method, required_for, names, grace_days = settings.mfa_policy()
    return Policy(
        method=method, required_for=required_for, groups=frozenset(names), grace_days=grace_days
    )


def requirement_of(
    user: User,
    at: dt.datetime,
    *,
    policy: Policy | None = None,
    enrolled: bool | None = None,
    user_groups=None,
) -> Requirement:
    """What the policy asks of `user` at `at`, reading what the caller did not pass."""
    policy = policy or current()
    if policy.method == settings.DISABLED:
        return Requirement(METHOD_OFF)
    if enrolled is None:  # an authenticator app, or a passkey or security key
        enrolled = totp.credential_of(user) is not None or webauthn.has_keys(user)
    if user_groups is None and not enrolled and policy.required_for == settings.GROUPS:
        user_groups = groups.groups_of(user)
    return decide(
        policy,
        user_groups=user_groups or (),
        enrolled=enrolled,
        at=at,
        required_since=user.mfa_required_since,
        deadline=user.mfa_deadline,
        reset=user.mfa_reset_at is not None,
    )


def requirement_kept(user: User, at: dt.datetime, *, user_groups=None) -> Requirement:
    """`requirement_of` for a session already signed in (the guard, the gateway): a
    grace that begins now, because the user was put in the scope since signing in, is
    kept on the server the first time it is seen, so that it ends (a deadline recounted
    from "now" at every request never would)."""
    requirement = requirement_of(user, at, user_groups=user_groups)
    if requirement.outcome in (POSTPONABLE, SET_UP) and user.mfa_required_since is None:
        start_grace(user, requirement, at)
        requirement = requirement_of(user, at, user_groups=user_groups)
    return requirement


def start_grace(user: User, requirement: Requirement, at: dt.datetime) -> None:
    """The first sign-in that requires set-up keeps its deadline on the server (the
    grace starts now; with 0 days it is already over). Once only: the UPDATE applies
    where none was kept, so two racing sign-ins keep the first one's."""
    if requirement.outcome not in (POSTPONABLE, SET_UP) or user.mfa_required_since:
        return
    if user.mfa_reset_at is not None:
        return  # no grace after a reset (see the module's docstring)
    deadline = requirement.deadline or at
    with write_transaction():
        User.update(mfa_required_since=at, mfa_deadline=deadline).where(
            (User.id == user.id) & User.mfa_required_since.is_null()
        ).execute()
    user.mfa_required_since, user.mfa_deadline = at, deadline


def end_grace(user: User) -> None:
    """The user set up: no deadline any more (and none from an earlier reset)."""
    User.update(mfa_reset_at=None, mfa_required_since=None, mfa_deadline=None).where(
        User.id == user.id
    ).execute()
    user.mfa_reset_at = user.mfa_required_since = user.mfa_deadline = None
