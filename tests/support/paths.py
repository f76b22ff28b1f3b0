"""The repository's folders, found from here (tests/support/), for every test that
reads a file of the checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "standalone_mfa"
TESTS = ROOT / "tests"
SUPPORT = TESTS / "support"
DEPLOY = ROOT / "deploy"
TEMPLATES = ROOT / "templates"
TRANSLATIONS = PACKAGE / "translations"
