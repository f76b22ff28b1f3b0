"""docs/configuration.md, generated from the settings' table (`core.config.KEYS`):

    python -m standalone_mfa.core.config_doc > docs/configuration.md

tests/meta/test_configuration_doc.py keeps the committed file equal to this output."""

from __future__ import annotations

import sys

from .config import KEYS, OUR_PREFIXES, TOPICS, Key

DOC_INTRO = """\
# Configuration

Every setting, generated from the table in `standalone_mfa/core/config.py` (`KEYS`) by
`python -m standalone_mfa.core.config_doc > docs/configuration.md`; a test keeps this
page equal to that output, so change the table, never this page.

Settings are read from the defaults below, then `config.py` in the instance folder
(`instance/` in a checkout), then environment variables with the `FLASK_` prefix
(`FLASK_MFA_LOCK_AFTER=20`). An environment value is read as JSON when it parses
(`20`, `false`, `["key1", "key2"]`, `{"rules": []}`), else as text; a text setting
keeps the text as written (`FLASK_MAIL_PASSWORD=0123` is `"0123"`).

The app refuses to start, with one line naming the setting, when:

- `SECRET_KEY` or `MFA_ENCRYPTION_KEYS` is missing (outside tests);
- a value is not what its setting accepts (a number outside its bounds, the text
  `"false"` for a switch, a `METRICS_TOKEN` under 32 characters);
- a name is a typo of a setting below, in `config.py` or the environment
  ("Unknown setting MFA_LOCK_AFTR: did you mean MFA_LOCK_AFTER?"): up to two edits
  (a letter added, dropped or changed, or two neighbours swapped), case aside, or
  one edit for a name under eight letters;
- a name starts like ours but is not below: {prefixes}.

Other names, such as Flask's own (`SERVER_NAME`, `TRUSTED_HOSTS`) or those of the
`flask` command (`FLASK_APP`, `FLASK_DEBUG`), pass untouched.
"""


def _shown_default(key: Key) -> str:
    if key.shown is not None:
        return key.shown
    if isinstance(key.default, str):
        return f"`{key.default}`"
    return f"`{key.default!r}`"


def markdown() -> str:
    """docs/configuration.md: every setting of `KEYS`, grouped by topic."""
    prefixes = ", ".join(f"`{p}`" for p in OUR_PREFIXES)
    parts = [DOC_INTRO.replace("{prefixes}", prefixes)]
    for topic, opening in TOPICS.items():
        opening = opening.replace("](docs/", "](")  # this page is in docs/
        parts.append(f"\n## {topic}\n\n{opening}\n\n| Setting | Default | Accepts | Meaning |\n")
        parts.append("|---------|---------|---------|---------|\n")
        for key in (k for k in KEYS if k.topic == topic):
            cells = (f"`{key.name}`", _shown_default(key), key.kind.describe, key.help)
            parts.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n")
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(markdown())
