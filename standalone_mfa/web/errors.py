"""What every response carries: security headers, and error pages that never show a
traceback (JSON for the API). A database that is locked or down answers 503, and so
does one whose schema does not match the code (SC-38): older (run `db upgrade`) or
newer (no silent downgrade). The app never upgrades by itself."""

from __future__ import annotations

import logging
import threading
import time

import peewee
from flask import (
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    ServiceUnavailable,
)

from ..core.config import setting
from ..core.db import UNAVAILABLE
from ..ops import schema
from ..signin.sessions import SessionEnded

logger = logging.getLogger("standalone_mfa")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
)
CSP_KEY = "standalone_mfa.csp"


def content_security_policy(cookie_domain: str | None) -> str:
    """The CSP. Browsers apply `form-action` to where a form's answer redirects too, so
    with `SESSION_COOKIE_DOMAIN` the apps the gateway protects (the domain and below,
    where `rd` may lead after the last sign-in step or a sign-out) are allowed."""
    sources = ["'self'"]
    if cookie_domain:
        for scheme in ("https", "http"):
            sources += [f"{scheme}://{cookie_domain}:*", f"{scheme}://*.{cookie_domain}:*"]
    return CSP.format(form_action=" ".join(sources))


MESSAGES = {
    400: _l("The request could not be understood. Reload the page and try again."),
    401: _l("Please sign in."),
    403: _l("You do not have permission to do that."),
    404: _l("There is no page at this address."),
    405: _l("That action is not allowed here."),
    413: _l("What was sent is too large."),
    503: _l("The service is briefly unavailable. Please try again in a moment."),
}
SCHEMA_MESSAGE = _l(
    "The service is unavailable: its database has not been upgraded for this version "
    "(or belongs to a newer one). An administrator must run `%(command)s`; the server "
    "log says more.",
    command=schema.UPGRADE_COMMAND,
)
# While the schema does not match, look again at most this often (a `db upgrade` run
# meanwhile is picked up without a restart); once it matches, not again.
SCHEMA_RECHECK_SECONDS = 5.0
# Endpoints that answer whatever the schema: the 503 page's stylesheet, the health
# check (it reports the mismatch itself) and the metrics.
SCHEMA_EXEMPT = {"static", "health.healthz", "metrics.metrics"}
_SCHEMA_CHECK = threading.Lock()
# PostgreSQL's "no such table" and "no such column": a schema that is not ours.
MISSING_SCHEMA_CODES = {"42P01", "42703"}
CSRF_MESSAGE = _l(
    "This form has expired or did not come from this site. Reload the page and try again."
)


class DatabaseUnavailable(ServiceUnavailable):
    description = MESSAGES[503]


class SchemaMismatch(ServiceUnavailable):
    description = SCHEMA_MESSAGE


def schema_problem() -> str | None:
    """Why this database cannot be served by this code (`ops.schema`'s one line), or
    None. Checked at the first request, then again at most every few seconds while
    there is a problem; the line is logged once for each new problem."""
    state = current_app._get_current_object().extensions.setdefault(
        "standalone_mfa.schema", {"ok": False, "checked_at": None, "problem": None}
    )
    if state["ok"]:
        return None
    with _SCHEMA_CHECK:  # one thread looks (and logs) at a time
        checked_at = state["checked_at"]
        if checked_at is not None and time.monotonic() - checked_at < SCHEMA_RECHECK_SECONDS:
            return state["problem"]
        try:
            problem = schema.status().problem()
        except UNAVAILABLE:
            return None  # the database is down: its own 503 says so
        if problem is not None and problem != state["problem"]:
            logger.error("refusing to serve: %s", problem)
        elif problem is None and state["problem"] is not None:
            logger.warning("the database schema matches the code now: serving")
        state.update(ok=problem is None, checked_at=time.monotonic(), problem=problem)
        return problem


def check_schema_at_start(app) -> None:
    """At start (wsgi.py): the version check now, so a database that needs
    `db upgrade` is in the log before the first request arrives."""
    with app.app_context():
        schema_problem()


def forget_schema_check() -> None:
    """Look at the schema again at the next request (a table went missing)."""
    current_app.extensions["standalone_mfa.schema"] = {
        "ok": False,
        "checked_at": None,
        "problem": None,
    }


def refuse_if_schema_mismatch():
    if request.endpoint in SCHEMA_EXEMPT:
        return
    if schema_problem() is not None:
        raise SchemaMismatch()


# Sent with every response unless the view set its own (the CSP is added from the app's
# configuration: see `content_security_policy`).
FIXED_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)


def security_headers(response):
    """Every response's security headers; the ones a view set itself are kept. Runs for
    every request, the gateway's checks included: one pass over the response's
    headers, not one per header."""
    headers = response.headers
    present = {name.lower() for name, _value in headers.items()}
    asked = request._get_current_object()  # not through the proxy at each use

    def add(name: str, value: str) -> None:
        if name.lower() not in present:
            headers.add(name, value)

    add("Content-Security-Policy", current_app._get_current_object().extensions[CSP_KEY])
    for name, value in FIXED_HEADERS:
        add(name, value)
    if asked.endpoint != "static":
        add("Cache-Control", "no-store")
    if asked.is_secure:
        subdomains = "; includeSubDomains" if setting("HSTS_INCLUDE_SUBDOMAINS") else ""
        add("Strict-Transport-Security", "max-age=63072000" + subdomains)
    return response


def refuse_if_database_down():
    """The session could not be loaded because the database is unavailable."""
    if g.get("database_error") is not None:
        raise DatabaseUnavailable()


def refuse_oversized_body():
    """413 for a declared body over MAX_CONTENT_LENGTH, whether or not the view reads
    it (Werkzeug alone only refuses a body when something reads it)."""
    limit = setting("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()


def _wants_json() -> bool:
    return request.blueprint in ("api", "health") or request.path.startswith("/api/")


def render_error(status: int, message: str, headers=None):
    if _wants_json():
        with force_locale("en"):  # the API and the health check speak English
            response = jsonify(error=str(message))
    else:
        response = make_response(render_template("error.html", status=status, message=message))
    response.status_code = status
    response.headers.extend(headers or {})
    return response


def handle_http_error(error: HTTPException):
    if error.code is None or error.code >= 500 and error.code != 503:
        return handle_unexpected(error)
    message = MESSAGES.get(error.code, error.name)
    if isinstance(error, CSRFError):
        message = CSRF_MESSAGE
    elif isinstance(error, SchemaMismatch):
        message = SCHEMA_MESSAGE
    elif _wants_json() and error.description and error.code == 404:
        message = error.description
    headers = {}
    if getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(error.valid_methods)  # 405 must say what is allowed
    if error.code == 401 and _wants_json():
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return render_error(error.code, message, headers)


def handle_unexpected(error):
    # The request failed part-way: whatever it changed in the session is not kept.
    if hasattr(session, "discard"):
        session.discard()
    original = getattr(error, "original_exception", None) or error
    if _missing_schema(original):
        # PostgreSQL's UndefinedTable/UndefinedColumn: as SQLite's "no such table", a
        # database without our schema, not a bug in a view.
        logger.warning("database schema missing: %s", type(original).__name__)
        forget_schema_check()
        return render_error(503, MESSAGES[503])
    if isinstance(original, UNAVAILABLE):
        logger.warning("database unavailable: %s", type(original).__name__)
        return render_error(503, MESSAGES[503])
    logger.error("unhandled error", exc_info=original)
    return render_error(500, _l("Something went wrong on our side. Please try again."))


def _missing_schema(error) -> bool:
    if not isinstance(error, peewee.ProgrammingError):
        return False
    # Peewee raises its own class while handling the driver's: that one is the context.
    candidates = (error.__context__, error.__cause__, *error.args)
    return any(getattr(c, "pgcode", None) in MISSING_SCHEMA_CODES for c in candidates)


def session_ended(_error):
    """A step whose session another request ended meanwhile: nothing was kept."""
    return redirect(url_for("auth.login"))


def init_app(app) -> None:
    app.extensions[CSP_KEY] = content_security_policy(setting("SESSION_COOKIE_DOMAIN", app))
    app.register_error_handler(SessionEnded, session_ended)
    app.before_request(refuse_if_schema_mismatch)
    app.before_request(refuse_if_database_down)
    app.before_request(refuse_oversized_body)
    app.after_request(security_headers)
    app.register_error_handler(HTTPException, handle_http_error)
    for error_class in UNAVAILABLE:
        app.register_error_handler(error_class, handle_unexpected)
    app.register_error_handler(InternalServerError, handle_unexpected)
    app.register_error_handler(Exception, handle_unexpected)
