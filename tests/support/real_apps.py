"""Real apps that sign people in from the gateway's `Remote-User`, for
tests/e2e/test_gateway_apps.py, each started on 127.0.0.1 and always stopped:

- Radicale (CalDAV/CardDAV; `[auth] type = http_remote_user`, `[rights] type =
  owner_only`, as in the research, docs/gateway/radicale.md), on its own server, which
  reads `Remote_User` as `Remote-User`;
- a small Django project (tests/support/django_probe: RemoteUserMiddleware with
  `header = "HTTP_REMOTE_USER"`) on `manage.py runserver`;
- tests/support/probe_app.py, a WSGI app that decodes `%2F`, on wsgiref (which merges `-` and
  `_` in header names, as CGI does) and over FastCGI with flup.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from support.paths import SUPPORT
from support.proxies import wait_for_port
from support.servers import free_port, stop


@contextlib.contextmanager
def _process(command: list[str], folder: Path, name: str, env: dict | None = None):
    """Start `command`; yield its port (the last argument after {port} is filled in)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = folder / f"{name}.log"
    environment = {**os.environ, "PYTHONPATH": str(SUPPORT), **(env or {})}
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=folder,
        )
    try:
        wait_for_port(port, process, log, name)
        yield port
    finally:
        stop(process)


RADICALE_CONFIG = """[server]
hosts = 127.0.0.1:{port}

[auth]
type = http_remote_user

[rights]
type = owner_only

[storage]
filesystem_folder = {storage}

[web]
type = none

[logging]
level = warning
"""


@contextlib.contextmanager
def radicale(folder: Path):
    """Radicale 3 with header login and owner-only rights; yields its port."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "radicale.conf"
    config.write_text(RADICALE_CONFIG.format(port=port, storage=folder / "collections"))
    log = folder / "radicale.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    try:
        wait_for_port(port, process, log, "radicale")
        yield port
    finally:
        stop(process)


@contextlib.contextmanager
def django_probe(folder: Path):
    """The Django probe project (its database migrated first); yields its port."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(SUPPORT),
        "DJANGO_PROBE_DB": str(folder / "django.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "django_probe.settings",
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity=0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    command = [sys.executable, "-m", "django", "runserver", "127.0.0.1:{port}", "--noreload"]
    with _process(command, folder, "django", env) as port:
        yield port


@contextlib.contextmanager
def probe(folder: Path, kind: str):
    """tests/support/probe_app.py over `kind` ("http" or "fastcgi"); yields its port."""
    command = [sys.executable, str(SUPPORT / "probe_app.py"), kind, "{port}"]
    with _process(command, folder, f"probe-{kind}", {"PROBE_NAME": kind}) as port:
        yield port
