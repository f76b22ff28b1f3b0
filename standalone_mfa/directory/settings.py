"""Site settings chosen by an administrator (the MFA method, who must use it and with
what grace, how long a device may be remembered), stored in the database so every
process sees the same choice."""

from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l

from ..core import audit
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.db import write_transaction
from ..core.models import Setting, User, UserGroup
from ..factors import devices

# The MFA methods an administrator can choose (the stored value of `mfa_method`).
DISABLED = "disabled"  # the password alone signs in (unless a user set up a code)
TOTP = "totp"  # a code from an authenticator app
MFA_METHODS = {DISABLED: _l("Disabled"), TOTP: "TOTP"}  # labels, in the page's language
DEFAULT_MFA_METHOD = DISABLED
REMEMBER_DAYS_MAX = 31  # a remembered device still needs the password; a month at most
# Who must use the method (see signin.policy): everyone (the first releases' rule), or
# only the members of the groups named in `mfa_groups`.
EVERYONE = "everyone"
GROUPS = "groups"
REQUIRED_FOR = {EVERYONE: _l("Everyone"), GROUPS: _l("Members of chosen groups")}
GRACE_DAYS_MAX = 30  # how long a user who must now set up may postpone it


def _stored(*keys: str) -> dict[str, str]:
    """The stored values of `keys` (those set), in one query."""
    return {row.key: row.value for row in Setting.select().where(Setting.key.in_(keys))}


def _method(value: str | None) -> str:
    return value if value in MFA_METHODS else DEFAULT_MFA_METHOD


def _days(value: str | None, highest: int) -> int:
    try:
        days = int(value) if value is not None else 0
    except ValueError:
        return 0
    return days if 0 <= days <= highest else 0


def _required_for(value: str | None) -> str:
    return value if value in REQUIRED_FOR else EVERYONE


def _split_groups(value: str | None) -> tuple[str, ...]:
    return tuple(sorted({name for name in (value or "").split(",") if name}))


def mfa_method() -> str:
    return _method(_stored("mfa_method").get("mfa_method"))


def remember_days() -> int:
    """For how many days a browser may skip the code after one; 0 is off."""
    return _days(_stored("remember_days").get("remember_days"), REMEMBER_DAYS_MAX)


def mfa_required_for() -> str:
    return _required_for(_stored("mfa_required_for").get("mfa_required_for"))


def mfa_groups() -> tuple[str, ...]:
    """The groups whose members must use MFA when it is required for groups (kept, and
    shown, while it is required for everyone)."""
    return _split_groups(_stored("mfa_groups").get("mfa_groups"))


def mfa_grace_days() -> int:
    """For how many days a user who must now set up may postpone it; 0: not at all."""
    return _days(_stored("mfa_grace_days").get("mfa_grace_days"), GRACE_DAYS_MAX)


def mfa_policy() -> tuple[str, str, tuple[str, ...], int]:
    """The method, who must use it, their groups and the grace days, in one query (a
    sign-in and every password-only request of a site that requires MFA read them)."""
    values = _stored("mfa_method", "mfa_required_for", "mfa_groups", "mfa_grace_days")
    return (
        _method(values.get("mfa_method")),
        _required_for(values.get("mfa_required_for")),
        _split_groups(values.get("mfa_groups")),
        _days(values.get("mfa_grace_days"), GRACE_DAYS_MAX),
    )


def groups_without_members(names) -> tuple[str, ...]:
    """Which of `names` no user is in (yet): allowed in the scope, but worth saying."""
    names = set(names)
    held = {row.name for row in UserGroup.select(UserGroup.name).where(UserGroup.name.in_(names))}
    return tuple(sorted(names - held))


def describe_scope(required_for: str, names) -> str:
    """ "everyone" or "groups staff,ops" (as the audit log and the CLI say it)."""
    listed = ",".join(sorted(names))
    if required_for == GROUPS:
        return f"groups {listed}" if listed else "groups (none)"
    return f"everyone (groups kept: {listed})" if listed else "everyone"


def set_mfa_method(method: str, *, actor: str, client: Client = NO_CLIENT) -> bool:
    """Store the method; returns whether it changed. Every save is audited."""
    if method not in MFA_METHODS:
        raise ValueError(f"unknown MFA method {method!r}")
    return _store("mfa_method", method, mfa_method, "mfa_method_changed", actor, client)


def set_remember_days(days: int, *, actor: str, client: Client = NO_CLIENT) -> bool:
    """Store the number of days (0 to 31); returns whether it changed. Audited. Devices
    remembered before are forgotten (0) or shortened to the new limit."""
    if not isinstance(days, int) or not 0 <= days <= REMEMBER_DAYS_MAX:
        raise ValueError(f"remember days must be 0 to {REMEMBER_DAYS_MAX}")
    with write_transaction():  # the setting, its audit row and the devices it limits
        changed = _store(
            "remember_days",
            str(days),
            lambda: str(remember_days()),
            "remember_days_changed",
            actor,
            client,
        )
        if changed:
            devices.limit_lifetime(days, actor=actor, client=client)
    return changed


def set_mfa_scope(required_for: str, names, *, actor: str, client: Client = NO_CLIENT) -> bool:
    """Store who must use MFA: everyone, or the members of `names` (already checked
    group names; the list is kept while it is everyone). Returns whether it changed.
    One audit row, `mfa_scope_changed`, says before -> after."""
    if required_for not in REQUIRED_FOR:
        raise ValueError(f"unknown MFA scope {required_for!r}")
    listed = ",".join(sorted(set(names)))
    if required_for == GROUPS and not listed:
        raise ValueError("MFA required for groups names no group")
    with write_transaction():
        before = describe_scope(mfa_required_for(), mfa_groups())
        after = describe_scope(required_for, _split_groups(listed))
        for key, value in (("mfa_required_for", required_for), ("mfa_groups", listed)):
            _put(key, value)
        return _record("mfa_scope_changed", before != after, f"{before} -> {after}", actor, client)


def set_mfa_grace_days(days: int, *, actor: str, client: Client = NO_CLIENT) -> bool:
    """Store the grace period (0 to 30 days); returns whether it changed. Audited, with
    how many pending deadlines it moved. A deadline still to come becomes the user's
    first required sign-in plus the new grace (shorter or longer); one that passed
    stays passed: lengthening the grace never revives it."""
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= GRACE_DAYS_MAX:
        raise ValueError(f"grace days must be 0 to {GRACE_DAYS_MAX}")
    with write_transaction():
        before = mfa_grace_days()
        _put("mfa_grace_days", str(days))
        moved = _move_deadlines(days, now()) if before != days else 0
        detail = f"{before} -> {days} days ({moved} pending deadlines moved)"
        return _record("mfa_grace_changed", before != days, detail, actor, client)


def _move_deadlines(days: int, at: dt.datetime) -> int:
    """Each deadline still to come, recounted with the new grace (in the caller's
    transaction). Only users who postponed hold one, so this is a short loop."""
    moved = 0
    pending = User.select(User.id, User.mfa_required_since, User.mfa_deadline).where(
        User.mfa_deadline > at, User.mfa_required_since.is_null(False)
    )
    for user in pending:
        deadline = user.mfa_required_since + dt.timedelta(days=days)
        if deadline != user.mfa_deadline:
            User.update(mfa_deadline=deadline).where(User.id == user.id).execute()
            moved += 1
    return moved


def _put(key: str, value: str) -> None:
    """Insert or replace one setting (in the caller's transaction)."""
    Setting.insert(key=key, value=value).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: value}
    ).execute()


def _store(key: str, value: str, current, event: str, actor: str, client: Client) -> bool:
    with write_transaction():  # the setting and its audit row, or neither
        before = current()
        _put(key, value)
        return _record(event, before != value, f"{before} -> {value}", actor, client)


def _record(event: str, changed: bool, detail: str, actor: str, client: Client) -> bool:
    """A setting's one audit row (in the caller's transaction); returns `changed`."""
    outcome = audit.CHANGED if changed else audit.UNCHANGED
    audit.record(event, outcome, actor=actor, detail=detail, client=client)
    return changed
