"""Writes `config.py` with new random keys into the settings folder (the one
`STANDALONE_MFA_INSTANCE` names, else `instance/` in a checkout), once: an existing file
is never overwritten. Run by `make run`:  python -m standalone_mfa.instance"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from flask import Flask

from .core import paths
from .core.crypto import generate_key
from .core.db import make_private

TEMPLATE = """\
# Written by `python -m standalone_mfa.instance` on first run. Keep this file private:
# it holds the keys that protect sessions and the TOTP secrets in the database.
SECRET_KEY = "{secret_key}"

# Fernet keys, newest first. To rotate: put a new key first, keep the old ones after
# it, run `flask --app standalone_mfa mfa rotate-keys`, then drop the old ones.
MFA_ENCRYPTION_KEYS = ["{fernet_key}"]
"""


def instance_path() -> Path:
    # The same folder the app will use (STANDALONE_MFA_INSTANCE, else Flask decides it
    # from the package location).
    bare = Flask(
        "standalone_mfa", instance_path=paths.instance_path(), instance_relative_config=True
    )
    return Path(bare.instance_path)


def write_config(path: Path) -> bool:
    # The folder holds the keys and the SQLite database: the owner's alone (SC-70).
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    make_private(path.parent, 0o700)
    if path.exists():
        return False
    content = TEMPLATE.format(secret_key=secrets.token_hex(32), fernet_key=generate_key())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print-key", action="store_true", help="print a new Fernet key")
    args = parser.parse_args(argv)
    if args.print_key:
        print(generate_key())
        return 0
    path = instance_path() / "config.py"
    if write_config(path):
        print(f"Wrote {path} with new keys.")
    else:
        print(f"{path} exists; left as it is.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
