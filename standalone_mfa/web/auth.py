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

from ..core import messages
from ..core.clock import now
from ..core.config import setting
from ..directory.groups import groups_of
from ..factors import webauthn
from ..gateway import check
from ..oidc import applications
from ..signin import methods, steps
from ..signin.destinations import is_absolute
from ..signin.state import ANONYMOUS, AUTHENTICATED
from . import gateway
from .cookies import device_token, set_trusted_browser_cookie, trusted_browser_token
from .forms import ButtonForm, LoginForm, WebAuthnForm
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
    return _login_page(form)


def _login_page(form: LoginForm):
    """The sign-in page: the password form, and the passkey form that static/webauthn.js
    shows where the browser can use it (usernameless options: any user's passkey)."""
    options = webauthn.authentication_options(None, binding=webauthn.binding_of(session), at=now())
    return render_template(
        "auth/login.html",
        form=form,
        passkey_form=WebAuthnForm(),
        passkey_options=options,
        destination=_kept_destination(),
    )


@bp.route("/login/passkey", methods=["POST"])
def login_passkey():
    """Sign in with a passkey: the browser's answer to the sign-in page's options,
    posted from the passkey form's hidden field (CSRF-checked)."""
    form = WebAuthnForm()
    raw = form.credential.data if form.validate_on_submit() else None
    outcome = steps.sign_in_with_passkey(
        session, raw, _destination(), trusted_token=trusted_browser_token()
    )
    if not outcome.ok:
        flash(outcome.message, "error")
        return redirect(url_for("auth.login", **_kept_destination()))
    response = redirect(landing_url(session))
    if outcome.trusted_token:
        set_trusted_browser_cookie(
            response, outcome.trusted_token, setting("TRUSTED_BROWSER_DAYS")
        )
    return response


def _kept_destination() -> dict:
    return {k: v for k, v in request.args.items() if k in ("rd", "next")}


def _back_to_destination():
    """A signed-in browser sent back to sign in, by a protected app whose rule needs
    the second factor this session has not passed (signed in while the site-wide
    method is Disabled): through the code step first, but only once the person pressed
    the page's button (a POST with its CSRF token): a link or an image on another
    site must not move the session into a step that ends it if abandoned. Otherwise
    straight there."""
    destination = destination_url(_destination())
    if not is_absolute(destination):
        return redirect(destination)
    if _asks_phishing_resistance(destination):
        return _phishing_resistant_step(destination)
    if session.record.second_factor_at is not None:
        return redirect(destination)
    form = ButtonForm()
    if form.validate_on_submit():  # a POST without the token never gets here (CSRFProtect)
        steps.require_second_factor(session, destination)
        return redirect(landing_url(session))
    return render_template(
        "auth/second_factor.html", form=form, app_host=urlsplit(destination).hostname
    )


def _asks_phishing_resistance(destination: str) -> bool:
    """Whether a `phishing_resistant` rule keeps this session (no WebAuthn ceremony
    passed) out of `destination`."""
    if methods.phishing_resistant(methods.parse(session.record.signin_methods)):
        return False
    user = session.user
    return check.asks_phishing_resistance(
        gateway.access_control(), destination, user.username, groups_of(user)
    )


def _phishing_resistant_step(destination: str):
    """The app asks for a passkey or security key. With one: after the person's click
    (a POST with its CSRF token, as for the second factor), the code step offering only
    the keys, then back. Without: how to add one."""
    host = urlsplit(destination).hostname
    if not webauthn.has_keys(session.user):
        return render_template("auth/phishing_resistant.html", app_host=host, form=None)
    form = ButtonForm()
    if form.validate_on_submit():
        steps.require_phishing_resistance(session, destination)
        return redirect(landing_url(session))
    return render_template("auth/phishing_resistant.html", app_host=host, form=form)


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
    """Who is signed in, and the applications they may open from here."""
    user = session.user  # the guard let only a signed-in session this far
    listed = applications.for_person(
        user.username,
        groups_of(user),
        configured=setting("APPLICATIONS"),
        access=gateway.access_control() if setting("ACCESS_CONTROL") is not None else None,
    )
    return render_template("auth/home.html", user=user, applications=listed)
