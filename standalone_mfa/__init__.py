"""Standalone MFA: sign-in with a password and a TOTP second factor.

`create_app` is the single entry point (used by the `standalone-mfa` command and
`flask --app standalone_mfa`, by `gunicorn 'standalone_mfa:create_app()'`, by `wsgi.py`
and by the tests)."""

from __future__ import annotations

import logging
import os
import sys

import click
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import cli, web
from .core import config as app_config
from .core import db, paths
from .core.clock import SystemClock
from .factors import passwords, webauthn
from .notices import mailer, sender
from .web import gateway_wsgi


class StandaloneMfa(Flask):
    """Flask, but each hook's and view's `ensure_sync` is worked out once per process:
    Flask asks for every hook of every request (fifteen a page), and each answer costs
    an `inspect` walk. The app has no async views, so the answer never changes."""

    _SYNC_CACHE_SIZE = 1024

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synced: dict = {}

    def ensure_sync(self, func):
        try:
            return self._synced[func]
        except KeyError:
            synced = super().ensure_sync(func)
            if len(self._synced) < self._SYNC_CACHE_SIZE:
                self._synced[func] = synced
            return synced
        except TypeError:  # an unhashable callable: asked every time, as Flask does
            return super().ensure_sync(func)


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Build the app from defaults, then `config.py` in the settings folder
    (`instance_path`, else `STANDALONE_MFA_INSTANCE`, else `instance/`) and `FLASK_*`
    variables (or, for tests, from `test_config` alone).

    A configuration error raises `ConfigurationError`; built by a command line or by
    gunicorn, it is one line instead (see `refuse_to_start`)."""
    try:
        return _build(test_config, instance_path)
    except app_config.ConfigurationError as exc:
        refuse_to_start(exc)
        raise


def _build(test_config: dict | None, instance_path: str | None) -> Flask:
    app = StandaloneMfa(
        __name__,
        instance_path=paths.instance_path(instance_path),
        instance_relative_config=True,
        template_folder=str(paths.templates()),
    )
    app_config.load(app.config, test_config)
    # The keys (config.py) and the SQLite database live here: the owner's alone (SC-70).
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    db.make_private(app.instance_path, 0o700)
    app_config.finish(app)
    passwords.prepare(app_config.setting("PASSWORD_HASH_METHOD", app))
    gateway_wsgi.init_app(app)  # the checks' lean path, under the proxy fix like Flask's own
    _init_proxy(app)
    _init_logging()
    app.extensions["standalone_mfa.clock"] = app.config.pop("CLOCK", None) or SystemClock()
    db.init_app(app)
    mailer.init_app(app)
    # After db's teardown in the list, so it runs before the connection goes back.
    app.teardown_appcontext(sender.flush_after_command)
    web.init_app(app)  # the gateway's start checks normalise GATEWAY_PORTAL_URL first
    webauthn.configure(app)
    cli.init_app(app)
    return app


def refuse_to_start(exc: app_config.ConfigurationError) -> None:
    """The edges: a configuration error met while a command line (`standalone-mfa`,
    `flask --app standalone_mfa`: a click context is open) builds the app prints one
    line and exits with status 2; under gunicorn it becomes gunicorn's "cannot load the
    application" error, which gunicorn prints as one line before it stops (rather than
    a traceback and a worker booted again and again). Elsewhere (a test, another WSGI
    server) the error is raised as it is."""
    line = "Configuration error: " + " ".join(str(exc).split())
    if click.get_current_context(silent=True) is not None:
        click.echo(line, err=True)
        sys.exit(2)
    gunicorn_errors = sys.modules.get("gunicorn.errors")
    if gunicorn_errors is not None:
        refused = type(
            "StartRefused", (app_config.ConfigurationError, gunicorn_errors.AppImportError), {}
        )
        raise refused(line) from None


def _init_proxy(app: Flask) -> None:
    """Believe X-Forwarded-* headers only as far as `PROXY_FIX_*` says proxies set them.

    With a hop count of 1, the client address is the last one in X-Forwarded-For (the
    one our proxy appended); whatever a client put before it is ignored."""
    hops = {name: app_config.setting(name, app) for name in app_config.PROXY_FIX_KEYS}
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
