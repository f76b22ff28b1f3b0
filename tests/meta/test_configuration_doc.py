"""docs/configuration.md is generated from the settings' table and cannot drift from
it: the committed page equals `python -m standalone_mfa.core.config_doc` byte for byte,
and every declared setting has its row, in its topic, with its default."""

from __future__ import annotations

import subprocess
import sys

from support.paths import ROOT

from standalone_mfa.core import config, config_doc

PAGE = ROOT / "docs" / "configuration.md"
REGENERATE = "python -m standalone_mfa.core.config_doc > docs/configuration.md"


def test_the_committed_page_is_the_generated_one():
    assert PAGE.read_text() == config_doc.markdown(), f"stale: run `{REGENERATE}`"


def test_the_module_entry_point_prints_the_page():
    printed = subprocess.run(
        [sys.executable, "-m", "standalone_mfa.core.config_doc"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout == PAGE.read_text()
    assert printed.stderr == ""


def test_every_setting_has_one_row_under_its_topic_with_its_default():
    section, rows = None, {}
    for line in PAGE.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:]
        elif line.startswith("| `"):
            name, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
            assert name.strip("`") not in rows, f"two rows for {name}"
            rows[name.strip("`")] = (section, default)
    assert set(rows) == set(config.BY_NAME)
    for key in config.KEYS:
        topic, default = rows[key.name]
        assert topic == key.topic, key.name
        if key.shown is None:
            assert default == f"`{key.default}`", key.name
