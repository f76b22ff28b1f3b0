"""Site settings chosen by an administrator (the MFA method), stored in the database
so every process sees the same choice."""

from __future__ import annotations

from . import audit
from .db import write_transaction
from .models import Setting

MFA_METHODS = {"disabled": "Disabled", "totp": "TOTP"}
DEFAULT_MFA_METHOD = "disabled"


def mfa_method() -> str:
    row = Setting.get_or_none(Setting.key == "mfa_method")
    return row.value if row and row.value in MFA_METHODS else DEFAULT_MFA_METHOD


def set_mfa_method(method: str, *, actor: str) -> bool:
    """Store the method; returns whether it changed. Every save is audited."""
    if method not in MFA_METHODS:
        raise ValueError(f"unknown MFA method {method!r}")
    with write_transaction():  # the setting and its audit row, or neither
        before = mfa_method()
        Setting.insert(key="mfa_method", value=method).on_conflict(
            conflict_target=[Setting.key], update={Setting.value: method}
        ).execute()
        audit.record(
            "mfa_method_changed",
            "ok" if before != method else "unchanged",
            actor=actor,
            detail=f"{before} -> {method}",
        )
    return before != method
