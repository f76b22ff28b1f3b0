"""Site settings chosen by an administrator (the MFA method, how long a device may be
remembered), stored in the database so every process sees the same choice."""

from __future__ import annotations

from ..core import audit
from ..core.audit import NO_CLIENT, Client
from ..core.db import write_transaction
from ..core.models import Setting
from ..factors import devices

MFA_METHODS = {"disabled": "Disabled", "totp": "TOTP"}
DEFAULT_MFA_METHOD = "disabled"
REMEMBER_DAYS_MAX = 31  # a remembered device still needs the password; a month at most


def mfa_method() -> str:
    row = Setting.get_or_none(Setting.key == "mfa_method")
    return row.value if row and row.value in MFA_METHODS else DEFAULT_MFA_METHOD


def remember_days() -> int:
    """For how many days a browser may skip the code after one; 0 is off."""
    row = Setting.get_or_none(Setting.key == "remember_days")
    try:
        days = int(row.value) if row else 0
    except ValueError:
        return 0
    return days if 0 <= days <= REMEMBER_DAYS_MAX else 0


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


def _store(key: str, value: str, current, event: str, actor: str, client: Client) -> bool:
    with write_transaction():  # the setting and its audit row, or neither
        before = current()
        Setting.insert(key=key, value=value).on_conflict(
            conflict_target=[Setting.key], update={Setting.value: value}
        ).execute()
        audit.record(
            event,
            "ok" if before != value else "unchanged",
            actor=actor,
            detail=f"{before} -> {value}",
            client=client,
        )
    return before != value
