"""Sign-in with username and password, sign-out, and the home page."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from ..core import messages
from ..core.config import setting
from ..signin import steps
from ..signin.destinations import is_absolute
from ..signin.state import ANONYMOUS, AUTHENTICATED
from .cookies import device_token, set_trusted_browser_cookie, trusted_browser_token
from .forms import ButtonForm, LoginForm
from .guard import destination_url, landing_url
from .session_cookie import end_unbound_session, unbound_token

bp = Blueprint("auth", __name__)


def _destination() -> str | None:
    """Where to go once signed in: `rd` (a protected app's URL, from the gateway) or
    `next` (a path of this app); both are checked before they are followed."""
    return request.args.get("rd") or request.args.get("next")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Ask for the username and password; on success go to the next step."""
    if session.state == AUTHENTICATED:
        return _back_to_destination()
    if request.method == "GET" and unbound_token() is not None:
        # Signed in for the apps, but this browser lacks the portal's binding cookie
        # (SC-67): say why the portal asks again.
        flash(messages.text("sign_in_again_here"), "info")
    form = LoginForm()
    if form.validate_on_submit():
        outcome = steps.submit_password(
            session,
            form.username.data,
            form.password.data,
            _destination(),
            device_token=device_token(),
            trusted_token=trusted_browser_token(),
        )
        if outcome.ok:
            return trust_if_signed_in(redirect(landing_url(session)))
        flash(outcome.message, "error")
    elif form.is_submitted():
        flash(messages.text("wrong_password_or_username"), "error")
    return render_template("auth/login.html", form=form)


def _back_to_destination():
    """A signed-in browser sent back to sign in, by a protected app whose rule needs
    the second factor this session has not passed (signed in while the site-wide
    method is Disabled): through the code step first, but only once the person pressed
    the page's button (a POST with its CSRF token): a link or an image on another
    site must not move the session into a step that ends it if abandoned. Otherwise
    straight there."""
    destination = destination_url(_destination())
    if not is_absolute(destination) or session.record.second_factor_at is not None:
        return redirect(destination)
    form = ButtonForm()
    if form.validate_on_submit():  # a POST without the token never gets here (CSRFProtect)
        steps.require_second_factor(session, destination)
        return redirect(landing_url(session))
    return render_template(
        "auth/second_factor.html", form=form, app_host=urlsplit(destination).hostname
    )


def trust_if_signed_in(response):
    """Once a sign-in is complete, give this browser its trusted-browser cookie (its
    own wrong-password counter for this user from now on)."""
    days = setting("TRUSTED_BROWSER_DAYS")
    token = steps.trust_browser(session, trusted_browser_token(), days)
    if token:
        set_trusted_browser_cookie(response, token, days)
    return response


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    """POST (CSRF-checked): end the session on the server, then go to `rd` (a protected
    app, which will ask to sign in again) or the sign-in page. GET, the link a protected
    app offers: a button to confirm, since a link alone must not sign anyone out.
    A session this browser holds without its binding cookie is signed out too."""
    destination = request.values.get("rd")
    if request.method != "POST":  # GET, and HEAD (which Flask routes here too)
        if session.state == ANONYMOUS and unbound_token() is None:
            return redirect(_after_sign_out(destination))
        return render_template("auth/logout.html", rd=destination)
    steps.sign_out(session)
    end_unbound_session()
    target = _after_sign_out(destination)
    if not is_absolute(target):
        flash(messages.text("signed_out"), "info")
    return redirect(target)


def _after_sign_out(destination: str | None) -> str:
    checked = destination_url(destination)
    return checked if is_absolute(checked) else url_for("auth.login")


@bp.route("/")
def home():
    """Show who is signed in."""
    return render_template("auth/home.html", user=current_user)
