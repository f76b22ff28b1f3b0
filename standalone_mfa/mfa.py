"""The second-factor pages: first-time set-up and the code at each login."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, session, url_for

from . import login, qr, totp
from .forms import CodeForm

bp = Blueprint("mfa", __name__, url_prefix="/mfa")


def _submit(form: CodeForm, service, *, retry: str, success_message: str | None = None):
    """Run a code service on the posted code (None when malformed: still an attempt),
    then go on, try again, or back to the password if the pending login ended."""
    outcome = service(session, form.code.data if form.validate() else None)
    if outcome.ok:
        if success_message:
            flash(success_message, "info")
        return redirect(login.landing_url(session))
    flash(outcome.message, "error")
    return redirect(url_for("auth.login" if outcome.ended else retry))


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Show a new secret as text and QR code; save it once the first code is right."""
    form = CodeForm()
    if form.is_submitted():
        return _submit(
            form,
            login.confirm_setup,
            retry="mfa.setup",
            success_message="Your authenticator app is set up. "
            "You will need it each time you sign in.",
        )
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
        return _submit(form, login.verify_code, retry="mfa.verify")
    return render_template("mfa_verify.html", form=form)
