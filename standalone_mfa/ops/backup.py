"""Backups of a SQLite database while the app serves (`flask --app standalone_mfa
backup PATH`): SQLite's own online backup, never a copy of the live file (which could
catch a page half-written or miss the WAL), then `PRAGMA integrity_check` on the copy.

The copy holds every password hash, token hash and encrypted TOTP secret: it is created
with mode 0600 from its first byte, written under a temporary name beside PATH and
moved into place only once verified, so PATH is never a partial or unchecked copy. An
existing PATH is kept unless `force`. PostgreSQL has its own tool: pg_dump.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from ..core.db import db, is_sqlite

PG_DUMP_HELP = (
    "This database is PostgreSQL: back it up with its own tool, for example "
    "`pg_dump --format=custom --file=mfa.dump DATABASE` (restore with pg_restore). "
    "Keep MFA_ENCRYPTION_KEYS (instance/config.py) too: without them the TOTP secrets "
    "in the dump cannot be decrypted."
)


class BackupError(RuntimeError):
    """The backup was not made (nothing was written at PATH)."""


def backup(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Copy the app's SQLite database to `path`; the path written. Raises BackupError."""
    database = db.obj
    if not is_sqlite(database):
        raise BackupError(PG_DUMP_HELP)
    source = database.database
    if source == ":memory:" or not os.path.exists(source):
        raise BackupError(f"There is no database file to back up ({source}).")
    target = Path(path).absolute()
    if not target.parent.is_dir():
        raise BackupError(f"The folder {target.parent} does not exist.")
    if target.exists() and not force:
        raise BackupError(f"{target} exists: choose another name, or add --force to replace it.")
    if target.exists() and os.path.samefile(target, source):
        raise BackupError("The backup cannot replace the database itself.")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        _copy(source, partial, timeout=database.connect_params.get("timeout", 10))
        if force:
            os.replace(partial, target)
        else:
            os.link(partial, target)  # fails if PATH appeared meanwhile: never overwritten
    except FileExistsError:
        raise BackupError(f"{target} exists: choose another name, or add --force.") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return target


def _copy(source: str, partial: Path, timeout: float) -> None:
    # Owner-only from the start (O_EXCL: a file someone prepared there is not reused).
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)  # whatever the umask
    os.close(fd)
    reader = sqlite3.connect(source, timeout=timeout)
    copy = sqlite3.connect(partial)
    try:
        # One step (pages=-1): the copy is one consistent snapshot, taken under a read
        # lock that (in WAL mode) does not stop the app's writers.
        reader.backup(copy)
        found = copy.execute("PRAGMA integrity_check").fetchall()
        if found != [("ok",)]:
            raise BackupError(f"The copy failed its integrity check: {found[:3]}")
        # One self-contained file, whatever journal mode the source uses.
        copy.execute("PRAGMA journal_mode=DELETE")
    finally:
        copy.close()
        reader.close()
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
