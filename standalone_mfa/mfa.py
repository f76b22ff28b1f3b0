"""The second-factor pages: first-time set-up and the code at each login."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, session

from . import login, qr, totp
from .forms import CodeForm

bp = Blueprint("mfa", __name__, url_prefix="/mfa")


def _submit(form: CodeForm, service):
    """Run a code service on the posted code (None when malformed: still an attempt),
    then go where the session's state now says: on, the same step, or the password."""
    outcome = service(session, form.code.data if form.validate() else None)
    if outcome.message:
        flash(outcome.message, "info" if outcome.ok else "error")
    return redirect(login.landing_url(session))


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Show a new secret as text and QR code; save it once the first code is right."""
    form = CodeForm()
    if form.is_submitted():
        return _submit(form, login.confirm_setup)
    secret = login.pending_secret(session)
    username = session.user.username
    uri = totp.provisioning_uri(secret, username)
    return render_template(
        "mfa_setup.html",
        form=form,
        secret=totp.grouped(secret),
        qr_svg=qr.qr_svg(
            uri,
            label=f"QR code to add {username} to your authenticator app. "
            "If you cannot scan it, type the secret key shown beside it.",
        ),
        issuer=current_app.config["MFA_ISSUER"],
        username=username,
        reset_at=session.user.mfa_reset_at,
    )


@bp.route("/verify", methods=["GET", "POST"])
def verify():
    """Ask for the current code from the user's authenticator app."""
    form = CodeForm()
    if form.is_submitted():
        return _submit(form, login.verify_code)
    return render_template("mfa_verify.html", form=form)
