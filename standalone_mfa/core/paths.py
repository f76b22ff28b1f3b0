"""Where the app finds its files, installed or in a source checkout.

- The settings folder (Flask's instance folder, with `config.py` and the SQLite file):
  the one `STANDALONE_MFA_INSTANCE` names, else Flask's choice: `instance/` beside the
  package in a source checkout, `<venv>/var/standalone_mfa-instance` once installed.
- The templates: the top-level `templates/` in a source checkout (the
  source, edited there), else `standalone_mfa/templates/`, where the wheel build copies
  them (setup.py).
- The catalogues: `standalone_mfa/translations/`, whose `.mo` files the build compiles
  (the wheel's, an editable install's in place, or `make`'s)."""

from __future__ import annotations

import os
from pathlib import Path

INSTANCE_VARIABLE = "STANDALONE_MFA_INSTANCE"
PACKAGE = Path(__file__).resolve().parent.parent
TRANSLATIONS = PACKAGE / "translations"


def instance_path(explicit: str | None = None) -> str | None:
    """The settings folder as an absolute path (`explicit` first, then the variable), or
    None to let Flask choose."""
    chosen = explicit or os.environ.get(INSTANCE_VARIABLE, "").strip()
    return os.path.abspath(os.path.expanduser(chosen)) if chosen else None


def templates() -> Path:
    """The checkout's `templates/` when the package sits in its source tree (setup.py
    beside it), else the copy inside the installed package."""
    source = PACKAGE.parent
    if (source / "setup.py").is_file() and (source / "templates").is_dir():
        return source / "templates"
    return PACKAGE / "templates"


def catalogue_problems() -> list[str]:
    """What would make a language fall back to English: a locale whose compiled
    catalogue is missing, or (where its source is, a checkout) older than it."""
    problems = []
    for folder in sorted(p for p in TRANSLATIONS.iterdir() if (p / "LC_MESSAGES").is_dir()):
        po = folder / "LC_MESSAGES" / "messages.po"
        mo = po.with_suffix(".mo")
        if not mo.is_file():
            problems.append(f"{mo} is missing")
        elif po.is_file() and po.stat().st_mtime > mo.stat().st_mtime:
            problems.append(f"{mo} is older than {po.name}")
    return problems
