"""Administration pages. Every view needs a signed-in administrator whose own
session finished the second factor (the state guard already saw to the latter)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from . import settings
from .forms import MfaSettingsForm

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_admin():
    if not current_user.is_authenticated:
        abort(401)
    if not current_user.is_admin:
        abort(403)


@bp.route("/")
def index():
    """The Administration page: links to each administrative setting."""
    return render_template("admin/index.html")


@bp.route("/mfa", methods=["GET", "POST"])
def mfa_settings():
    """Choose whether sign-in asks for a second factor (Disabled or TOTP), and for how
    many days a device may skip the code."""
    form = MfaSettingsForm(
        mfa_method=settings.mfa_method(), remember_days=settings.remember_days()
    )
    if form.validate_on_submit():
        settings.set_mfa_method(form.mfa_method.data, actor=current_user.username)
        days = form.remember_days.data
        if days is None:
            days = settings.remember_days()
        settings.set_remember_days(days, actor=current_user.username)
        label = settings.MFA_METHODS[form.mfa_method.data]
        remembered = f" Devices are remembered for {days} days." if days else ""
        flash(f"Multi-Factor Authentication is now set to {label}.{remembered}", "info")
        return redirect(url_for("admin.mfa_settings"))
    if form.is_submitted():
        if form.mfa_method.errors:
            flash("Choose Disabled or TOTP.", "error")
        else:
            flash(f"Remember devices for 0 to {settings.REMEMBER_DAYS_MAX} days.", "error")
    return render_template("admin/mfa.html", form=form)
