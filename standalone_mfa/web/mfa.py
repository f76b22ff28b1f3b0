"""The second-factor pages: first-time set-up, the recovery codes shown once after
it, and at each later login the code (or a recovery code)."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    session,
    url_for,
)

from ..core import messages
from ..core.clock import now
from ..core.config import setting
from ..directory import settings
from ..signin import policy, sessions, state, steps
from . import qr
from .auth import trust_if_signed_in
from .cookies import set_device_cookie, set_trusted_browser_cookie, trusted_browser_token
from .forms import ButtonForm, CodeForm, NewKeyForm, RecoveryCodeForm, VerifyForm, WebAuthnForm
from .guard import landing_url

bp = Blueprint("mfa", __name__, url_prefix="/mfa")


def _after(outcome: steps.StepOutcome):
    """Show the outcome, then go where the session's state now says: on, the same
    step, or the password."""
    if outcome.message:
        flash(outcome.message, "info" if outcome.ok else "error")
    response = redirect(landing_url(session._get_current_object()))
    if outcome.device_token:
        set_device_cookie(response, outcome.device_token, outcome.device_days)
    if outcome.trusted_token:  # trusted in the step's own transaction
        set_trusted_browser_cookie(
            response, outcome.trusted_token, setting("TRUSTED_BROWSER_DAYS")
        )
    elif outcome.ok:
        trust_if_signed_in(response)
    return response


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Show a new secret as text and QR code; save it once the first code is right."""
    form = CodeForm()
    if form.is_submitted():
        # A malformed code is still an attempt: it reaches the service as None.
        return _after(steps.confirm_setup(session, form.code.data if form.validate() else None))
    finished = steps.set_up_meanwhile(session)
    if finished:  # a reload after another window finished: never show a dead secret
        return _after(finished)
    later = _postponable_days()
    return render_template(
        "mfa/setup.html",
        form=form,
        **qr.secret_and_qr(steps.pending_secret(session), session.user.username),
        reset_at=session.user.mfa_reset_at,
        later_form=ButtonForm() if later else None,
        days_left=later,
    )


def _postponable_days() -> int | None:
    """Days left to postpone this sign-in's set-up; None where "Set up later" is not
    offered (no grace, or a set-up a gateway rule asked for)."""
    if not session.get(steps.MAY_POSTPONE_KEY):
        return None
    at = now()
    requirement = policy.requirement_of(session.user, at)
    return requirement.days_left(at) if requirement.outcome == policy.POSTPONABLE else None


@bp.route("/setup/later", methods=["POST"])
def setup_later():
    """ "Set up later": signed in with the password alone while the grace lasts."""
    if not ButtonForm().validate_on_submit():
        flash(messages.text("check_the_form"), "error")
        return redirect(url_for("mfa.setup"))
    return _after(steps.postpone_setup(session))


@bp.app_context_processor
def setup_deadline():
    """The banner of every signed-in page (base.html, partials/setup_deadline.html)
    while the user's set-up is postponed: signed in with the password alone, within
    their grace."""
    record = getattr(session, "record", None)
    if (
        record is None
        or session.state != state.AUTHENTICATED
        or record.second_factor_at
        or settings.mfa_method() == settings.DISABLED
    ):
        return {}
    at = now()
    requirement = policy.requirement_of(session.user, at)
    if requirement.outcome != policy.POSTPONABLE:
        return {}
    return {"setup_deadline": messages.counted("setup_days_left", requirement.days_left(at))}


@bp.route("/verify", methods=["GET", "POST"])
def verify():
    """Ask for the current code from the user's authenticator app."""
    form = VerifyForm()
    if form.is_submitted():
        valid = form.validate()
        return _after(
            steps.verify_code(
                session._get_current_object(),  # a hot path: not through the proxy
                form.code.data if valid else None,
                remember=valid and bool(form.remember_device.data),
                trusted_token=trusted_browser_token(),
            )
        )
    return render_template(
        "mfa/verify.html",
        form=form,
        remember_days=settings.remember_days(),
        has_app=session.loaded()[0] is not None,
        key_only=bool(session.get(state.KEY_ONLY_KEY)),
        key_options=steps.security_key_options(session),
        key_form=WebAuthnForm(),
    )


@bp.route("/security-key", methods=["POST"])
def security_key():
    """The code step's "Use your security key or passkey": the browser's answer."""
    form = WebAuthnForm()
    raw = form.credential.data if form.validate_on_submit() else None
    return _after(steps.verify_security_key(session, raw, trusted_token=trusted_browser_token()))


@bp.route("/setup/passkey", methods=["GET", "POST"])
def setup_passkey():
    """Set-up's "Use a passkey or security key instead": name it, the browser makes it;
    the recovery codes are then shown once."""
    form = NewKeyForm()
    if form.is_submitted():
        if not form.validate():
            flash(messages.text("check_the_form"), "error")
            return redirect(url_for("mfa.setup_passkey"))
        return _after(
            steps.register_key_at_setup(
                session, form.credential.data, name=form.name.data, kind=form.kind.data
            )
        )
    return render_template(
        "mfa/setup_passkey.html",
        key_form=form,
        action=url_for("mfa.setup_passkey"),
        passkey_options=steps.key_registration_options(session, "passkey"),
        security_key_options=steps.key_registration_options(session, "security_key"),
    )


@bp.route("/recovery", methods=["GET", "POST"], endpoint="recovery")
def recovery_page():
    """Sign in with one of the recovery codes instead of the app's code."""
    if session.get(state.KEY_ONLY_KEY):  # a `phishing_resistant` rule's step: keys only
        return redirect(url_for("mfa.verify"))
    form = RecoveryCodeForm()
    if form.is_submitted():
        raw = form.recovery_code.data if form.validate() else None
        outcome = steps.use_recovery_code(session, raw)
        if not outcome.ok and session.state == state.TOTP_VERIFY:
            flash(outcome.message, "error")  # try again here, not on the code page
            return redirect(url_for("mfa.recovery"))
        return _after(outcome)
    return render_template("mfa/recovery.html", form=form)


@bp.route("/recovery-codes", methods=["GET", "POST"])
def recovery_codes():
    """Show new recovery codes once; "I have saved these codes" forgets them."""
    form = ButtonForm()
    codes = sessions.shown_codes(session)
    if form.validate_on_submit():
        finishing_sign_in = session.state == state.RECOVERY_CODES
        steps.codes_saved(session)
        if finishing_sign_in:
            return trust_if_signed_in(redirect(landing_url(session)))
        return redirect(url_for("account.security"))  # new codes made on that page
    if not codes:  # already saved, or never made in this session
        return redirect(url_for("account.security"))
    return render_template("mfa/recovery_codes.html", form=form, codes=codes)


@bp.route("/recovery-codes.txt")
def recovery_codes_download():
    """The codes being shown, as a text file to keep."""
    codes = sessions.shown_codes(session)
    if not codes:
        return redirect(url_for("account.security"))
    # In the page's language; the issuer (the authenticator's label) is never translated.
    text = render_template(
        "mfa/recovery_codes.txt",
        codes=codes,
        username=session.user.username,
        issuer=setting("MFA_ISSUER"),
    )
    return Response(
        text,
        mimetype="text/plain",
        headers={"Content-Disposition": 'attachment; filename="recovery-codes.txt"'},
    )
