"""Standalone MFA: sign-in with a password and a TOTP second factor.

`create_app` is the single entry point (used by `flask --app standalone_mfa`, by
`wsgi.py` and by the tests)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import cli, web
from .core import config as app_config
from .core import db
from .core.clock import SystemClock
from .factors import passwords
from .notices import mailer, sender

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Build the app from defaults, then `instance/config.py` and `FLASK_*` variables
    (or, for tests, from `test_config` alone)."""
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(TEMPLATES),
    )
    app_config.load(app.config, test_config)
    # The keys (config.py) and the SQLite database live here: the owner's alone (SC-70).
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    db.make_private(app.instance_path, 0o700)
    app_config.finish(app)
    passwords.prepare(app.config["PASSWORD_HASH_METHOD"])
    _init_proxy(app)
    _init_logging()
    app.extensions["standalone_mfa.clock"] = app.config.pop("CLOCK", None) or SystemClock()
    db.init_app(app)
    mailer.init_app(app)
    # After db's teardown in the list, so it runs before the connection goes back.
    app.teardown_appcontext(sender.flush_after_command)
    web.init_app(app)
    cli.init_app(app)
    return app


def _init_proxy(app: Flask) -> None:
    """Believe X-Forwarded-* headers only as far as `PROXY_FIX_*` says proxies set them.

    With a hop count of 1, the client address is the last one in X-Forwarded-For (the
    one our proxy appended); whatever a client put before it is ignored."""
    config = app.config
    hops = {name: config[name] for name in app_config.PROXY_FIX_KEYS}
    if any(hops.values()):
        app.wsgi_app = ProxyFix(
            app.wsgi_app,
            x_for=hops["PROXY_FIX_X_FOR"],
            x_proto=hops["PROXY_FIX_X_PROTO"],
            x_host=hops["PROXY_FIX_X_HOST"],
            x_prefix=hops["PROXY_FIX_X_PREFIX"],
        )


def _init_logging() -> None:
    # Peewee logs every query with its parameters at DEBUG: hashes, ciphertexts and
    # CSRF secrets would reach the logs. Keep it quiet whatever the root level is.
    logging.getLogger("peewee").setLevel(logging.INFO)
    # Audit events are JSON lines on stderr unless the deployment configured logging.
    audit_logger = logging.getLogger("standalone_mfa.audit")
    if not audit_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        audit_logger.addHandler(handler)
        audit_logger.setLevel(logging.INFO)
