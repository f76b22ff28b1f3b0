"""docs/configuration.md, generated from the settings' table (`core.config.KEYS`):

    python -m standalone_mfa.core.config_doc > docs/configuration.md

tests/test_configuration_doc.py keeps the committed file equal to this output."""

from __future__ import annotations

import sys

from .config import KEYS, OUR_PREFIXES, TOPICS, Key

DOC_INTRO = """\
# Configuration

Generated from `standalone_mfa/core/config.py` (`KEYS`) by
`python -m standalone_mfa.core.config_doc > docs/configuration.md`; a test keeps
this file equal to that output, so edit the table, not this page.

Settings are read from the defaults below, then `config.py` in the instance folder
(`instance/` in a checkout), then environment variables with the `FLASK_` prefix
(`FLASK_MFA_LOCK_AFTER=20`). An environment value is read as JSON when it parses as
JSON (`20`, `false`, `["key1", "key2"]`, `{"rules": []}`), else as text; text
settings keep the text as written.

The app refuses to start, with one line naming the setting, when:

- `SECRET_KEY` or `MFA_ENCRYPTION_KEYS` is missing (outside tests);
- a value is not what its setting accepts (a number out of its bounds, text for a
  switch, a `METRICS_TOKEN` under 32 characters);
- a name is one typo away from a setting below (`MFA_LOCK_AFTR`, `FLASK_ACCES_CONTROL`:
  "Unknown setting MFA_LOCK_AFTR: did you mean MFA_LOCK_AFTER?"): up to two edits
  (a letter added, dropped, changed, or two swapped) for names of eight letters or
  more, one for shorter ones, case aside;
- a name starts like ours ({prefixes}) but is not below.

Other names (Flask's own, such as `SERVER_NAME`, or a library's) pass untouched.
"""


def _shown_default(key: Key) -> str:
    if key.shown is not None:
        return key.shown
    if isinstance(key.default, bool):
        return f"`{str(key.default).lower()}`"
    if isinstance(key.default, str):
        return f"`{key.default}`"
    return f"`{key.default!r}`"


def markdown() -> str:
    """docs/configuration.md: every setting of `KEYS`, grouped by topic."""
    prefixes = ", ".join(f"`{p}`" for p in OUR_PREFIXES)
    parts = [DOC_INTRO.replace("{prefixes}", prefixes)]
    for topic in TOPICS:
        parts.append(f"\n## {topic}\n\n| Setting | Default | Accepts | Meaning |\n")
        parts.append("|---------|---------|---------|---------|\n")
        for key in (k for k in KEYS if k.topic == topic):
            cells = (f"`{key.name}`", _shown_default(key), key.kind.describe, key.help)
            parts.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n")
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(markdown())
