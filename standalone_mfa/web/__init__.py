"""The web layer: blueprints, forms, cookies, error pages and the request guard. The
only code that touches `request`, `url_for` or `flash`; it hands the services what
they need (the session, the client's address and browser) as arguments."""

from __future__ import annotations

from flask import session
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from ..notices import sender
from ..signin.state import AUTHENTICATED
from . import (
    account,
    admin,
    admin_access,
    admin_applications,
    api,
    auth,
    cross_site,
    errors,
    gateway,
    guard,
    health,
    i18n,
    metrics,
    mfa,
    oidc,
    sessionless,
)
from .session_cookie import ServerSessionInterface

csrf = CSRFProtect()
login_manager = LoginManager()


def init_app(app) -> None:
    app.session_interface = ServerSessionInterface()
    metrics.init_app(app)  # before all: its clock starts before any check can answer
    errors.init_app(app)  # first: a database that is down answers 503 before any other check
    # Before the guard: a form from another site changes nothing, not even a state.
    app.before_request(cross_site.refuse_cross_site)
    # The guard runs before the CSRF check: a stale form posted from a session that
    # has moved on (a double click racing the first click's rotation) is sent to its
    # current step, not shown a 400. The guard changes nothing a forged POST could use.
    app.before_request(guard.guard)
    app.after_request(sender.after_response)
    csrf.init_app(app)
    i18n.init_app(app)
    _init_login(app)
    for blueprint in (
        *(auth.bp, mfa.bp, account.bp, admin.bp, admin_access.bp, admin_applications.bp),
        *(api.bp, health.bp),
    ):
        app.register_blueprint(blueprint)
    csrf.exempt(api.bp)  # bearer tokens, no cookies: nothing for a forged request to ride on
    gateway.init_app(app)  # parses ACCESS_CONTROL: a broken rule stops the app here
    oidc.init_app(app)
    csrf.exempt(oidc.api)  # token, userinfo, revocation: no cookie, clients' own credentials
    sessionless.init_app(app)  # last: it reads the routes of every blueprint


def _init_login(app) -> None:
    """Flask-Login sees a user only in a session that finished every step."""
    login_manager.init_app(app)
    login_manager.session_protection = None  # the session id already rotates on each step

    @login_manager.user_loader
    def no_user_from_cookie(_user_id):
        # Never set (no remember cookie is issued); a forged one finds nobody.
        return None

    @login_manager.request_loader
    def load_user_from_session(_request):
        if session.state == AUTHENTICATED:
            return session.user
        return None
