"""The Account security page and the changes users make to their own sign-in."""

from __future__ import annotations

from flask import (
    Blueprint,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import refresh

from ..accounts import authenticator, emails, passkeys, self_service
from ..core import browsers, messages
from ..core.config import setting
from ..directory import settings
from ..factors import app_passwords, recovery, totp, webauthn
from ..signin import methods, reauth, steps
from . import i18n, qr
from .cookies import trusted_browser_token
from .forms import (
    ButtonForm,
    ChangeEmailForm,
    ChangePasswordForm,
    CodeForm,
    ConfirmEmailForm,
    ConfirmIdentityForm,
    NewAppPasswordForm,
    NewKeyForm,
    RenameKeyForm,
    RevokeAppPasswordForm,
    SavedLanguageForm,
    StepUpPasswordForm,
    TimeZoneForm,
)

bp = Blueprint("account", __name__, url_prefix="/account")

# Pages that change the authenticator or its recovery codes: only for a user who has one.
NEEDS_AUTHENTICATOR = {
    "account.new_authenticator",
    "account.new_authenticator_setup",
}

# A first authenticator (a voluntary set-up, or one postponed): only for a user without one.
NEEDS_NO_AUTHENTICATOR = {"account.first_authenticator", "account.first_authenticator_setup"}


@bp.before_request
def require_authenticator():
    if request.endpoint == "account.regenerate_codes" and not steps.second_factor_enrolled(
        session.user
    ):
        flash(messages.text("no_authenticator"), "error")
        return redirect(url_for("account.security"))
    if request.endpoint in NEEDS_AUTHENTICATOR and totp.credential_of(session.user) is None:
        flash(messages.text("no_authenticator"), "error")
        return redirect(url_for("account.security"))
    if request.endpoint in NEEDS_NO_AUTHENTICATOR and totp.credential_of(session.user):
        flash(messages.text("has_authenticator"), "error")
        return redirect(url_for("account.security"))
    return None


def _first_error(form) -> str:
    # By field, not by text: the CSRF messages are in the page's language too.
    for name, errors in form.errors.items():
        if errors and name != "csrf_token":
            return str(errors[0])
    return messages.text("check_the_form")


@bp.route("/security")
def security():
    """MFA status, recovery codes, remembered devices, sessions and recent sign-ins,
    in people's words: events by their label, browsers by name."""
    return render_template(
        "account/security.html",
        overview=self_service.overview(session.user),
        recovery_codes_made=recovery.ever_made(session.user),
        current_session_id=session.record.id,
        remember_days=settings.remember_days(),
        low_water=recovery.LOW_WATER,
        codes_in_a_set=recovery.COUNT,
        browser_name=browsers.describe,
        signin_methods=methods.parse,
        phishing_resistant=methods.phishing_resistant,
        event_label=messages.event_label,
        form=ButtonForm(),
        overview_user=session.user,
        time_zone_form=TimeZoneForm(time_zone=session.user.time_zone or ""),
        language_form=SavedLanguageForm(language=session.user.locale or ""),
        time_zones=emails.time_zones(),
    )


def _after_proof(purpose: str, then, *, allow_recovery: bool):
    """The password and a current code (or, if allowed, a recovery code, or one of
    the user's own keys); once both are right, `then()` gives the response."""
    form = ConfirmIdentityForm()
    if form.validate_on_submit():
        problem = reauth.confirm_identity(
            session,
            session.user,
            form.password.data,
            form.code.data,
            form.recovery_code.data,
            allow_recovery=allow_recovery,
            trusted=trusted_browser_token(),
            key=form.credential.data,
        )
        if problem is None:
            return then()
        flash(problem, "error")
    elif form.is_submitted():
        flash(_first_error(form), "error")
    return render_template(
        "account/confirm_identity.html",
        form=form,
        purpose=purpose,
        key_options=reauth.key_options(session, session.user),
    )


@bp.route("/recovery-codes", methods=["GET", "POST"])
def regenerate_codes():
    """New recovery codes, after the password and a current code."""

    def regenerate():
        self_service.regenerate_recovery_codes(session, session.user)
        flash(messages.text("new_codes_made"), "info")
        return redirect(url_for("mfa.recovery_codes"))

    return _after_proof("codes", regenerate, allow_recovery=False)


@bp.route("/authenticator", methods=["GET", "POST"])
def new_authenticator():
    """Step 1 of moving to a new authenticator app: prove it is you."""

    def start():
        authenticator.start(session)
        return redirect(url_for("account.new_authenticator_setup"))

    return _after_proof("authenticator", start, allow_recovery=True)


@bp.route("/authenticator/new", methods=["GET", "POST"])
def new_authenticator_setup():
    """Step 2: add the new secret to the new app and confirm its first code."""
    return _confirm_the_secret(first=False)


@bp.route("/authenticator/first", methods=["GET", "POST"])
def first_authenticator():
    """Step 1 of setting up a first authenticator app: the password again."""
    form = StepUpPasswordForm()
    if form.validate_on_submit():
        problem = reauth.confirm_password(
            session, session.user, form.password.data, trusted=trusted_browser_token()
        )
        if problem is None:
            authenticator.start(session)
            return redirect(url_for("account.first_authenticator_setup"))
        flash(problem, "error")
    elif form.is_submitted():
        flash(_first_error(form), "error")
    return render_template(
        "account/first_authenticator_confirm.html",
        form=form,
        mfa_off=settings.mfa_method() == settings.DISABLED,
    )


@bp.route("/authenticator/first/new", methods=["GET", "POST"])
def first_authenticator_setup():
    """Step 2: add the secret to an app and confirm its first code; the recovery codes
    are then shown once."""
    return _confirm_the_secret(first=True)


def _confirm_the_secret(*, first: bool):
    """Step 2 of a first (`first`) or a new authenticator: show the secret being set
    up; save it once the app's first code is right."""
    secret = authenticator.pending_secret(session)
    if secret is None:
        flash(messages.text("prove_password_first" if first else "prove_first"), "error")
        return redirect(
            url_for("account.first_authenticator" if first else "account.new_authenticator")
        )
    form = CodeForm()
    if form.is_submitted():
        code = form.code.data if form.validate() else None
        problem = authenticator.confirm(session, session.user, code, first=first)
        if problem is None:
            flash(
                messages.text(
                    "first_authenticator_set_up" if first else "new_authenticator_set_up"
                ),
                "info",
            )
            return redirect(url_for("mfa.recovery_codes" if first else "account.security"))
        flash(problem, "error")
        return redirect(url_for(request.endpoint))
    return render_template(
        "account/first_authenticator.html" if first else "account/new_authenticator.html",
        form=form,
        **qr.secret_and_qr(secret, session.user.username, new_app=not first),
    )


# --- Passkeys and security keys ---------------------------------------------------------


@bp.route("/passkeys")
def passkeys_list():
    """The user's passkeys and security keys: name, kind, added, last used, synced or
    bound to one device; rename and remove."""
    return render_template(
        "account/passkeys.html",
        keys=webauthn.credentials_of(session.user),
        form=ButtonForm(),
        rename_form=RenameKeyForm(),
    )


@bp.route("/passkeys/new", methods=["GET", "POST"])
def new_passkey():
    """Add a passkey or security key: prove it is you (the password, and a code if you
    have an authenticator app), then name it and let the browser make it."""
    if not passkeys.proven(session):

        def proven():
            passkeys.start(session)
            return redirect(url_for("account.new_passkey"))

        return _after_proof("passkey", proven, allow_recovery=True)
    form = NewKeyForm()
    if form.is_submitted():
        if not form.validate():
            flash(_first_error(form), "error")
            return redirect(url_for("account.new_passkey"))
        outcome = passkeys.add(
            session, form.credential.data, name=form.name.data, kind=form.kind.data
        )
        if not outcome.ok:
            flash(messages.text(outcome.problem), "error")
            return redirect(url_for("account.new_passkey"))
        flash(messages.text("key_added"), "info")
        if passkeys.first_key_codes_shown(session):
            return redirect(url_for("mfa.recovery_codes"))
        return redirect(url_for("account.passkeys_list"))
    return render_template(
        "account/passkey_new.html",
        key_form=form,
        action=url_for("account.new_passkey"),
        passkey_options=passkeys.options(session, webauthn.PASSKEY),
        security_key_options=passkeys.options(session, webauthn.SECURITY_KEY),
    )


@bp.post("/passkeys/<int:key_id>/rename")
def rename_passkey(key_id: int):
    """Give one of your keys another name."""
    form = RenameKeyForm()
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    else:
        outcome = passkeys.rename(session, key_id, form.name.data)
        flash(messages.text("key_renamed" if outcome.ok else outcome.problem),
              "info" if outcome.ok else "error")  # fmt: skip
    return redirect(url_for("account.passkeys_list"))


@bp.post("/passkeys/<int:key_id>/remove")
def remove_passkey(key_id: int):
    """Remove one of your keys (you are told by mail)."""
    if ButtonForm().validate_on_submit():
        if passkeys.remove(session, key_id) is None:
            flash(messages.text("key_not_found"), "error")
        else:
            flash(messages.text("key_removed"), "info")
    return redirect(url_for("account.passkeys_list"))


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    """Change the password (the current one first); other sessions end."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        problem = reauth.confirm_password(
            session, session.user, form.current_password.data, trusted=trusted_browser_token()
        )
        if problem is None:
            ended = self_service.change_password(session, session.user, form.new_password.data)
            flash(messages.counted("password_changed", ended), "info")
            return redirect(url_for("account.security"))
        flash(problem, "error")
    elif form.is_submitted():
        flash(_first_error(form), "error")
    return render_template("account/password.html", form=form)


@bp.route("/sessions/end-others", methods=["POST"])
def end_other_sessions():
    """Sign out every other session of this account."""
    if ButtonForm().validate_on_submit():
        ended = self_service.sign_out_other_sessions(session, session.user)
        flash(messages.counted("other_sessions_ended", ended), "info")
    return redirect(url_for("account.security"))


@bp.route("/devices/forget", methods=["POST"])
def forget_devices():
    """Forget every remembered device: each will be asked for a code again."""
    if ButtonForm().validate_on_submit():
        count = self_service.forget_devices(session, session.user)
        flash(messages.counted("devices_forgotten", count), "info")
    return redirect(url_for("account.security"))


# --- App passwords: for clients that cannot sign in on a page ------------------------------


def _app_passwords_page(form: NewAppPasswordForm, status: int = 200):
    user = session.user
    rows = app_passwords.all_of(user)
    return render_template(
        "account/app_passwords.html",
        rows=rows,
        live=sum(1 for row in rows if row.revoked_at is None),
        most=app_passwords.MAX_PER_USER,
        name_most=app_passwords.NAME_MAX_LENGTH,
        form=form,
        revoke_form=RevokeAppPasswordForm(formdata=None),
        has_authenticator=totp.credential_of(user) is not None,
        key_options=reauth.key_options(session, user),
    ), status


@bp.get("/app-passwords")
def app_passwords_list():
    """The user's app passwords (name, made, last use and its address), a form to make
    one and a button to revoke each."""
    return _app_passwords_page(NewAppPasswordForm(formdata=None))


@bp.post("/app-passwords")
def create_app_password():
    """Make an app password, after the password and (with an authenticator) a current
    code; it is shown in this response only: never flashed, stored or put in a URL."""
    form = NewAppPasswordForm()
    user = session.user
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
        return _app_passwords_page(form, 400)
    try:
        name, _ = app_passwords.check_new(user, form.name.data)
    except app_passwords.AppPasswordError as error:
        flash(str(error), "error")
        return _app_passwords_page(form, 400)
    two_factor = reauth.has_second_factor(user)  # proved below, past the password
    problem = reauth.confirm_identity(
        session,
        user,
        form.password.data,
        form.code.data,
        trusted=trusted_browser_token(),
        key=form.credential.data,
    )
    if problem is None:
        try:
            secret = app_passwords.create(
                user, name, two_factor=two_factor, actor=user.username, client=session.client
            )
        except app_passwords.AppPasswordError as error:  # made meanwhile in another tab
            problem = str(error)
        else:
            response = make_response(
                render_template(
                    "account/app_password_made.html",
                    name=name,
                    secret=secret,
                    username=user.username,
                )
            )
            response.headers["Cache-Control"] = "no-store"
            return response
    flash(problem, "error")
    return _app_passwords_page(form, 400)


@bp.post("/app-passwords/revoke")
def revoke_app_password():
    """Revoke one app password: the apps that use it are refused from their next request."""
    form = RevokeAppPasswordForm()
    if form.validate_on_submit():
        name = form.name.data
        if app_passwords.revoke(
            session.user, name, actor=session.user.username, client=session.client
        ):
            flash(messages.text("app_password_revoked", name=name), "info")
        else:
            flash(messages.text("app_password_not_found"), "error")
    return redirect(url_for("account.app_passwords_list"))


# --- The address notices go to, and the time zone of mails ------------------------------


def confirmation_link(token: str) -> str:
    """The absolute link mailed to a new address. From GATEWAY_PORTAL_URL when it is
    set (the operator's word for the public URL); else from this request's URL, which
    the user's own browser sent (its Host header, believed through X-Forwarded-Host
    only as far as PROXY_FIX_X_HOST says)."""
    path = url_for("account.confirm_email", token=token)
    portal = setting("GATEWAY_PORTAL_URL")
    if portal:
        return portal + path[len(request.script_root) :]
    return url_for("account.confirm_email", token=token, _external=True)


@bp.route("/email", methods=["GET", "POST"])
def change_email():
    """A new address for notices (the password first); a link confirms it."""
    form = ChangeEmailForm()
    user = session.user
    if form.validate_on_submit():
        problem = reauth.confirm_password(
            session, user, form.current_password.data, trusted=trusted_browser_token()
        )
        if problem is None:
            try:
                address = emails.request_change(
                    user, form.email.data, link_for=confirmation_link, client=session.client
                )
            except (emails.BadAddress, emails.EmailError) as error:
                form.email.errors = [str(error)]
                flash(str(error), "error")
            else:
                hours = round(emails.LINK_LIFETIME.total_seconds() / 3600)
                flash(messages.text("email_link_sent", address=address, hours=hours), "info")
                return redirect(url_for("account.security"))
        else:
            flash(problem, "error")
    elif form.is_submitted():
        flash(_first_error(form), "error")
    return render_template("account/email.html", form=form, user=user)


@bp.post("/email/cancel")
def cancel_email_change():
    """Drop the address waiting for its link."""
    form = ButtonForm()
    if form.validate_on_submit() and emails.cancel_change(session.user, client=session.client):
        flash(messages.text("email_change_cancelled"), "info")
    return redirect(url_for("account.security"))


@bp.route("/email/confirm", methods=["GET", "POST"])
def confirm_email():
    """The link in the mail. Opening it (GET) changes nothing: mail scanners fetch
    links. It shows a button that posts the token back (with CSRF) from a hidden field;
    only the signed-in owner of the account can use it (the guard sends anyone else to
    sign in first, and a link of another account does not work)."""
    form = ConfirmEmailForm()
    if request.method == "POST":
        if form.validate_on_submit():
            outcome = emails.confirm(session.user, form.token.data, client=session.client)
        else:
            outcome = emails.NOT_VALID
        if outcome == emails.CONFIRMED:
            flash(messages.text("email_confirmed", address=session.user.email), "info")
            return redirect(url_for("account.security"))
        return _link_refused(outcome, 400)
    token = request.args.get("token", "")
    outcome, link = emails.check_link(session.user, token)
    if link is None:
        return _link_refused(outcome, 200)  # a page that says why, not an error
    form.token.data = token
    return render_template("account/email_confirm.html", form=form, link=link)


def _link_refused(outcome: str, status: int):
    problem = messages.text(
        "email_link_expired" if outcome == emails.EXPIRED else "email_link_not_valid"
    )
    return render_template("account/email_confirm.html", problem=problem), status


@bp.post("/language")
def language():
    """The language this user's pages and mails use, wherever they sign in (empty:
    as their browser asks)."""
    form = SavedLanguageForm()
    if not form.validate_on_submit():
        flash(messages.text("choose_a_language"), "error")
        return redirect(url_for("account.security"))
    raw = form.language.data or ""
    code = i18n.supported(raw) if raw else None
    if raw and (code is None or code != raw):
        flash(messages.text("choose_a_language"), "error")
        return redirect(url_for("account.security"))
    self_service.set_language(session, session.user, code)
    # Flask-Babel chose this request's language already: say it in the new one.
    refresh()
    if code:
        flash(messages.text("language_saved", language=i18n.LOCALES[code]), "info")
    else:
        flash(
            messages.text("language_follows_browser", language=i18n.LOCALES[i18n.default()]),
            "info",
        )
    return redirect(url_for("account.security"))


@bp.post("/time-zone")
def time_zone():
    """The time zone mails tell times in (empty: UTC)."""
    form = TimeZoneForm()
    if form.validate_on_submit():
        try:
            zone = emails.set_time_zone(session.user, form.time_zone.data, client=session.client)
        except emails.EmailError as error:
            flash(str(error), "error")
        else:
            flash(messages.text("time_zone_set", zone=zone or "UTC"), "info")
    elif form.is_submitted():
        flash(messages.text("bad_time_zone"), "error")
    return redirect(url_for("account.security"))
