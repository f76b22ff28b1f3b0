"""Sign-in with username and password, sign-out, and the home page."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from ..core import messages
from ..signin import steps
from .cookies import device_token, set_trusted_browser_cookie, trusted_browser_token
from .forms import LoginForm
from .guard import landing_url

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Ask for the username and password; on success go to the next step."""
    form = LoginForm()
    if form.validate_on_submit():
        outcome = steps.submit_password(
            session,
            form.username.data,
            form.password.data,
            request.args.get("next"),
            device_token=device_token(),
            trusted_token=trusted_browser_token(),
        )
        if outcome.ok:
            return trust_if_signed_in(redirect(landing_url(session)))
        flash(outcome.message, "error")
    elif form.is_submitted():
        flash(messages.text("wrong_password_or_username"), "error")
    return render_template("auth/login.html", form=form)


def trust_if_signed_in(response):
    """Once a sign-in is complete, give this browser its trusted-browser cookie (its
    own wrong-password counter for this user from now on)."""
    days = current_app.config["TRUSTED_BROWSER_DAYS"]
    token = steps.trust_browser(session, trusted_browser_token(), days)
    if token:
        set_trusted_browser_cookie(response, token, days)
    return response


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session on the server and return to the sign-in page (CSRF-checked)."""
    steps.sign_out(session)
    flash(messages.text("signed_out"), "info")
    return redirect(url_for("auth.login"))


@bp.route("/")
def home():
    """Show who is signed in."""
    return render_template("auth/home.html", user=current_user)
