"""gunicorn for the tests, as deployed: started from the checkout (so it reads
`gunicorn.conf.py`), on a port the kernel picks, ready once every worker booted and
/healthz answers, and always stopped. One helper for every test that needs the real
server (the gunicorn conf, metrics across workers, several instances, the gateway)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from support.app import FAST_HASH, fresh_schema
from support.paths import ROOT

GUNICORN = Path(sys.executable).with_name("gunicorn")
LISTENING_RE = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
BOOT_TIMEOUT = 60
HTTP_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """This shell's environment without any FLASK_ variable (nor a metrics folder of
    another gunicorn): the server reads only what the test gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def app_env(app, **flask_env) -> dict[str, str]:
    """`clean_env` plus the test app's keys and database, and `FLASK_<name>` for each
    of `flask_env` (strings as they are, anything else as JSON)."""
    return clean_env() | {
        "FLASK_SECRET_KEY": app.config["SECRET_KEY"],
        "FLASK_MFA_ENCRYPTION_KEYS": json.dumps(app.config["MFA_ENCRYPTION_KEYS"]),
        "FLASK_DATABASE_URL": app.config["DATABASE_URL"],
        **{
            f"FLASK_{name}": value if isinstance(value, str) else json.dumps(value)
            for name, value in flask_env.items()
        },
    }


def instance_target(instance: Path) -> str:
    """The WSGI target of the app of an instance folder (its config.py)."""
    return f"standalone_mfa:create_app(instance_path={str(instance)!r})"


@contextlib.contextmanager
def gunicorn(
    target: str,
    log: Path,
    env: dict[str, str],
    workers: int = 1,
    threads: int = 0,
    listener: socket.socket | None = None,
):
    """Serve `target` (`wsgi:app`, or `instance_target(...)`); yields the base URL. On
    a port the kernel picks, or on `listener`'s (a socket the test bound, so that it
    knows the URL before the server starts: the server's own address in its config)."""
    bind = f"fd://{listener.fileno()}" if listener is not None else "127.0.0.1:0"
    command = [
        str(GUNICORN),
        f"--bind={bind}",
        f"--workers={workers}",
        "--no-control-socket",  # one per user by default: instances would share it
    ]
    if threads:
        command += ["--worker-class=gthread", f"--threads={threads}"]
    with log.open("w") as handle:
        process = subprocess.Popen(  # noqa: S603 -- our own venv's gunicorn
            [*command, target],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            pass_fds=() if listener is None else (listener.fileno(),),
        )
    try:
        yield _ready(process, log, workers)
    finally:
        stop(process)


def _ready(process: subprocess.Popen, log: Path, workers: int) -> str:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        text = log.read_text()
        match = LISTENING_RE.search(text)
        if match and len(re.findall(r"Booting worker", text)) >= workers:
            with contextlib.suppress(requests.RequestException), requests.Session() as probe:
                probe.trust_env = False
                if probe.get(match.group(1) + "/healthz", timeout=5).status_code == 200:
                    return match.group(1)
        time.sleep(0.1)  # polling for readiness, not waiting for an outcome
    pytest.fail(f"gunicorn did not answer within {BOOT_TIMEOUT} s:\n{log.read_text()}")


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def quiet_server(app):
    """Serve `app` with werkzeug's threaded server on a free port of 127.0.0.1, without
    an access-log line per request (errors are still logged); yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


def write_instance(folder: Path, settings: dict | None = None) -> Path:
    """A new instance folder whose config.py has new keys, the tests' fast password
    hash and `settings` (without DATABASE_URL: a SQLite file in the folder)."""
    from standalone_mfa.core.crypto import generate_key

    folder.mkdir(parents=True)
    lines = {
        "SECRET_KEY": os.urandom(32).hex(),
        "MFA_ENCRYPTION_KEYS": [generate_key()],
        "PASSWORD_HASH_METHOD": FAST_HASH,  # tests only: scrypt is tested elsewhere
        **(settings or {}),
    }
    (folder / "config.py").write_text("".join(f"{k} = {v!r}\n" for k, v in lines.items()))
    return folder


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextlib.contextmanager
def portal_instances(folder: Path, settings: dict, count: int = 1, threads: int = 4):
    """`count` gunicorn instances (two workers each, the real clock) of one new instance
    folder with `settings`, on its database after the real upgrade, TOTP on. Yields (an
    app in this process on the same database and keys, [each instance's base URL])."""
    from standalone_mfa import create_app
    from standalone_mfa.core.db import db
    from standalone_mfa.directory import settings as mfa_settings

    instance = write_instance(folder / "instance", settings)
    app = create_app(instance_path=str(instance))
    with app.app_context():
        fresh_schema()
        mfa_settings.set_mfa_method("totp", actor="test")
    target = instance_target(instance)
    try:
        with contextlib.ExitStack() as running:
            urls = [
                running.enter_context(
                    gunicorn(target, folder / f"gunicorn-{n}.log", clean_env(), 2, threads)
                )
                for n in range(count)
            ]
            yield app, urls
    finally:
        with app.app_context():
            db.close()
