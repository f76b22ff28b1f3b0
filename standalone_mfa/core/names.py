"""Names people give things so they can tell them apart ("Phone calendar", "Grafana"):
one rule for every such name."""

from __future__ import annotations

import unicodedata


def display_name(raw: str | None, most: int) -> str | None:
    """`raw` with its spaces collapsed, if it is 1-`most` printable characters; else
    None (the caller says why, in its own words)."""
    name = " ".join((raw or "").split())
    if not name or len(name) > most or any(is_control(c) for c in name):
        return None
    return name


def is_control(character: str) -> bool:
    """A control, format, surrogate or unassigned character (Unicode category C*)."""
    return unicodedata.category(character).startswith("C")
