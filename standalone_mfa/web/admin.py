"""Administration pages. Every view needs a signed-in administrator whose own
session finished the second factor (the state guard already saw to the latter).
Actions on users also need a recent step-up (`step_up`) and a confirmation page; saving
the MFA settings needs the step-up too."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from ..accounts import administration, emails, reset
from ..core import audit as audit_log
from ..core import messages
from ..core.db import write_transaction
from ..directory import groups, settings
from ..directory.users import UserError, create_user, find_user
from ..factors import passwords, throttle
from ..signin import reauth
from ..signin.destinations import safe_next_path
from .cookies import trusted_browser_token
from .forms import (
    AdminEmailForm,
    AuditFilterForm,
    ButtonForm,
    CodeForm,
    GroupForm,
    MfaSettingsForm,
    NewUserForm,
    StepUpPasswordForm,
    UserSearchForm,
    WebAuthnForm,
    pairs,
)
from .session_cookie import client

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def require_admin():
    if not current_user.is_authenticated:
        abort(401)
    if not current_user.is_admin:
        abort(403)


def _step_up_first(back_to: str | None = None):
    """To the step-up page, then back to this page, or to `back_to` for a POST-only
    URL (with a GET: nothing posted is kept, so the administrator confirms the change
    again)."""
    if request.method == "POST":
        flash(messages.text("step_up_first"), "error")
    return redirect(url_for("admin.step_up_page", next=back_to or request.path))


def requires_step_up(view=None, *, writes_only: bool = False, back_to: str | None = None):
    """Send an administrator who has not re-proved who they are lately to the step-up
    page first; they come back to the page they asked for (never to a POST).
    `writes_only`: any administrator may read the page; only a POST needs the step-up.
    `back_to`: for a POST-only URL, the endpoint of the page to come back to (given the
    view's arguments)."""

    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            if (writes_only and request.method != "POST") or reauth.is_fresh(session):
                return view(*args, **kwargs)
            return _step_up_first(url_for(back_to, **kwargs) if back_to else None)

        return checked

    return decorate(view) if view is not None else decorate


@bp.route("/")
def index():
    """The Administration page: links to each administrative setting."""
    return render_template("admin/index.html")


@bp.route("/mfa", methods=["GET", "POST"])
@requires_step_up(writes_only=True)
def mfa_settings():
    """Choose whether sign-in asks for a second factor (Disabled or TOTP), of whom
    (everyone, or the members of chosen groups), for how many days a user who must now
    set up may postpone it, and for how many days a device may skip the code. Any
    administrator may read it; saving needs a fresh step-up, as the actions on users do
    (one POST must not switch MFA off for everyone from a hijacked session)."""
    form = MfaSettingsForm(
        mfa_method=settings.mfa_method(),
        remember_days=settings.remember_days(),
        mfa_required_for=settings.mfa_required_for(),
        mfa_groups=", ".join(settings.mfa_groups()),
        mfa_grace_days=settings.mfa_grace_days(),
    )
    if form.validate_on_submit():
        _save_mfa_settings(form)
        return redirect(url_for("admin.mfa_settings"))
    if form.is_submitted():
        flash(_mfa_form_problem(form), "error")
    return render_template(
        "admin/mfa.html",
        form=form,
        step_up_fresh=reauth.is_fresh(session),
        grace_days_max=settings.GRACE_DAYS_MAX,
    )


def _save_mfa_settings(form: MfaSettingsForm) -> None:
    """Every setting of the form, each audited (before -> after), in one transaction."""
    actor, by = current_user.username, client()
    days = form.remember_days.data
    if days is None:
        days = settings.remember_days()
    required_for = form.mfa_required_for.data or settings.mfa_required_for()
    grace = form.mfa_grace_days.data
    if grace is None:
        grace = settings.mfa_grace_days()
    names = form.group_names()
    with write_transaction():
        settings.set_mfa_method(form.mfa_method.data, actor=actor, client=by)
        settings.set_remember_days(days, actor=actor, client=by)
        scope_changed = settings.set_mfa_scope(required_for, names, actor=actor, client=by)
        grace_changed = settings.set_mfa_grace_days(grace, actor=actor, client=by)
    label = settings.MFA_METHODS[form.mfa_method.data]
    if days:
        flash(messages.counted("mfa_method_set_remember", days, label=label), "info")
    else:
        flash(messages.text("mfa_method_set", label=label), "info")
    if scope_changed or grace_changed:  # said only when it changed: the method is said anyway
        who = settings.describe_scope(
            required_for, names if required_for == settings.GROUPS else ()
        )
        if grace:
            flash(messages.counted("mfa_scope_saved_grace", grace, who=who), "info")
        else:
            flash(messages.text("mfa_scope_saved", who=who), "info")
    empty = settings.groups_without_members(names) if required_for == settings.GROUPS else ()
    if empty:
        flash(messages.text("mfa_groups_empty", names=", ".join(empty)), "info")


def _mfa_form_problem(form: MfaSettingsForm) -> str:
    """What to say about a refused form (nothing of it was saved)."""
    if form.mfa_method.errors:
        return messages.text("choose_a_method")
    if form.mfa_required_for.errors:
        errors = [e for e in form.mfa_required_for.errors if e == messages.text("name_a_group")]
        return errors[0] if errors else messages.text("choose_who")
    if form.mfa_groups.errors:
        return form.mfa_groups.errors[0]
    if form.mfa_grace_days.errors:
        return messages.text("grace_days_range", highest=settings.GRACE_DAYS_MAX)
    if form.remember_days.errors:
        return messages.text("remember_days_range", highest=settings.REMEMBER_DAYS_MAX)
    return messages.text("check_the_form")


def _page_number() -> int:
    return request.args.get("page", 1, type=int) or 1


# --- Users -------------------------------------------------------------------------------


@bp.route("/users")
def users():
    """List users with their MFA status and throttle state; search by username."""
    form = UserSearchForm(request.args)
    term = form.q.data if form.validate() else ""
    return render_template(
        "admin/users.html",
        form=form,
        result=administration.list_users(term or "", _page_number(), clamp=True),
        backoff_after=throttle.policy().backoff_after,
        lock_after=throttle.policy().lock_after,
    )


def _step_up_target() -> str:
    target = safe_next_path(request.args.get("next"))
    if not target or not target.startswith(url_for("admin.index")):
        target = url_for("admin.users")
    return target


@bp.route("/step-up", methods=["GET", "POST"])
def step_up_page():
    """Re-enter a current code (or, without an authenticator, the password), or use
    one of your own passkeys or security keys (`step_up_key`)."""
    target = _step_up_target()
    method = reauth.method_for(current_user)
    form = CodeForm() if method == reauth.CODE else StepUpPasswordForm()
    if form.is_submitted():
        field = form.code if method == reauth.CODE else form.password
        secret = field.data if form.validate() else None
        ok, message = reauth.step_up(session, secret, trusted=trusted_browser_token())
        flash(message, "info" if ok else "error")
        if ok:
            return redirect(target)
        return redirect(url_for("admin.step_up_page", next=target))
    return render_template(
        "admin/step_up.html",
        form=form,
        method=method,
        key_options=reauth.key_options(session, current_user),
        key_form=WebAuthnForm(),
        target=target,
    )


@bp.post("/step-up/key")
def step_up_key():
    """The step-up page's "Use your security key or passkey": the browser's answer."""
    target = _step_up_target()
    form = WebAuthnForm()
    raw = form.credential.data if form.validate_on_submit() else ""
    ok, message = reauth.step_up(session, None, key=raw or "")
    flash(message, "info" if ok else "error")
    return redirect(target if ok else url_for("admin.step_up_page", next=target))


@bp.route("/users/new", methods=["GET", "POST"])
@requires_step_up
def new_user():
    """Create a user with a typed or a generated initial password (shown once)."""
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            generated = None if form.password.data else passwords.new_random_password()
            # Not inside a write transaction: hashing the password would hold SQLite's lock.
            user = create_user(
                form.username.data,
                form.password.data or generated,
                actor=current_user.username,
                client=client(),
            )
        except UserError as error:
            flash(str(error), "error")
        else:
            flash(messages.text("user_created", name=user.username), "info")
            if generated is None:
                return redirect(url_for("admin.users", q=user.username))
            # In this response only: never flashed, logged or stored but as its hash.
            return render_template("admin/user_created.html", user=user, password=generated)
    return render_template("admin/user_new.html", form=form)


@dataclass(frozen=True)
class UserAction:
    title: str
    button: str
    explanation: str


USER_ACTIONS = {
    "reset-mfa": UserAction(
        _l("Reset two-factor authentication"),
        _l("Reset two-factor authentication"),
        _l(
            "Their authenticator is removed and all their sessions end. At their next "
            "sign-in they set up a new authenticator and are told that you reset it."
        ),
    ),
    "unlock": UserAction(
        _l("Unlock"),
        _l("Unlock"),
        _l(
            "Their wrong codes are forgiven: they can enter a code again at once. Their "
            "authenticator and sessions are kept."
        ),
    ),
    "grant-admin": UserAction(
        _l("Make administrator"),
        _l("Make administrator"),
        _l("They can open Administration, change every setting and act on every user."),
    ),
    "revoke-admin": UserAction(
        _l("Revoke administrator"),
        _l("Revoke administrator"),
        _l(
            "They lose access to Administration at once. The last administrator cannot be revoked."
        ),
    ),
    "sign-out": UserAction(
        _l("Sign out everywhere"),
        _l("Sign out everywhere"),
        _l("Every session of this user ends now, in every browser; they sign in again."),
    ),
}


def _perform(action: str, user) -> tuple[str, str]:
    """Do one action; return the flash (no secret in it) and its category."""
    actor = current_user.username
    name = user.username
    if action == "reset-mfa":
        if not reset.reset_totp(user, actor=actor, client=client()):
            return messages.text("reset_nothing", name=name), "error"
        return messages.text("reset_done", name=name), "info"
    if action == "unlock":
        if throttle.unlock(user, actor=actor, client=client()):
            return messages.text("unlocked", name=name), "info"
        return messages.text("unlock_nothing", name=name), "info"
    if action == "sign-out":
        ended = administration.end_sessions(user, actor=actor, client=client())
        return messages.counted("user_sessions_ended", ended, name=name), "info"
    outcome = administration.set_admin(user, action == "grant-admin", actor=actor, client=client())
    if outcome == administration.LAST_ADMIN:
        return messages.text("last_admin", name=name), "error"
    if outcome == administration.UNCHANGED:
        return messages.text("admin_unchanged", name=name), "info"
    if action == "grant-admin":
        return messages.text("admin_granted", name=name), "info"
    return messages.text("admin_revoked", name=name), "info"


@requires_step_up
def user_action(username):
    """Confirm, then do, one action on one user (the last path segment names it)."""
    action = request.url_rule.rule.rsplit("/", 1)[1]
    user = find_user(username)
    if user is None:
        abort(404)
    form = ButtonForm()
    if form.validate_on_submit():
        message, category = _perform(action, user)
        flash(message, category)
        if not find_user(current_user.username).is_admin:  # they revoked themselves
            return redirect(url_for("auth.home"))
        return redirect(url_for("admin.users", q=user.username))
    return render_template(
        "admin/user_action.html",
        form=form,
        user=administration.row_for(user),
        action=USER_ACTIONS[action],
    )


# One rule (and endpoint, "admin.user_ACTION") per action: a plain path, no free
# argument to choose what is done.
for _action in USER_ACTIONS:
    bp.add_url_rule(
        f"/users/<username>/{_action}",
        endpoint=f"user_{_action}",
        view_func=user_action,
        methods=["GET", "POST"],
    )


# --- A user's groups -----------------------------------------------------------------------


def _user_or_404(username: str):
    user = find_user(username)
    if user is None:
        abort(404)
    return user


@bp.route("/users/<username>/groups", methods=["GET", "POST"])
@requires_step_up(writes_only=True)
def user_groups(username):
    """A user's groups, and a form to add one. Any administrator may read it; a change
    needs a fresh step-up, as the actions on users do: a group can open protected apps
    through the gateway."""
    user = _user_or_404(username)
    form = GroupForm()
    if form.validate_on_submit():
        try:
            change = groups.add(
                user, form.group.data, actor=current_user.username, client=client()
            )
        except groups.GroupError as error:
            flash(str(error), "error")
        else:
            flash(change.message, "info")
            return redirect(url_for("admin.user_groups", username=user.username))
    elif form.is_submitted():
        flash(messages.text("bad_group_name"), "error")
    return render_template(
        "admin/user_groups.html",
        form=form,
        user=administration.row_for(user),
        step_up_fresh=reauth.is_fresh(session),
    )


@bp.post("/users/<username>/groups/remove")
@requires_step_up(back_to="admin.user_groups")
def user_group_remove(username):
    """Take a user out of one group (the button beside it), then back to their groups."""
    user = _user_or_404(username)
    page = url_for("admin.user_groups", username=user.username)
    form = GroupForm()
    if not form.validate():  # the CSRF token was checked before the view
        flash(messages.text("bad_group_name"), "error")
        return redirect(page)
    try:
        change = groups.remove(user, form.group.data, actor=current_user.username, client=client())
    except groups.GroupError as error:
        flash(str(error), "error")
    else:
        flash(change.message, "info")
    return redirect(page)


# --- A user's address ---------------------------------------------------------------------


@bp.route("/users/<username>/email", methods=["GET", "POST"])
@requires_step_up(writes_only=True)
def user_email(username):
    """A user's address, and a form to set it (confirmed at once: an administrator
    knows their users). Any administrator may read it; a change needs a fresh step-up,
    as the groups do: whoever holds the address reads the account's notices."""
    user = _user_or_404(username)
    form = AdminEmailForm()
    if form.validate_on_submit():
        try:
            outcome = emails.set_by_admin(
                user, form.email.data, actor=current_user.username, client=client()
            )
        except emails.BadAddress as error:
            form.email.errors = [str(error)]
            flash(str(error), "error")
        else:
            flash(
                messages.text(
                    "email_set" if outcome == emails.CHANGED else "email_unchanged",
                    name=user.username,
                    address=user.email,
                ),
                "info",
            )
            return redirect(url_for("admin.user_email", username=user.username))
    elif form.is_submitted():
        flash(_first_form_error(form), "error")
    return render_template(
        "admin/user_email.html",
        form=form,
        user=administration.row_for(user),
        step_up_fresh=reauth.is_fresh(session),
    )


def _first_form_error(form) -> str:
    # By field, not by text: the CSRF messages are in the page's language too.
    for name, errors in form.errors.items():
        if errors and name != "csrf_token":
            return errors[0]
    return messages.text("check_the_form")


@bp.post("/users/<username>/email/remove")
@requires_step_up(back_to="admin.user_email")
def user_email_remove(username):
    """Take a user's address away (and any pending one): they get no notices."""
    user = _user_or_404(username)
    page = url_for("admin.user_email", username=user.username)
    if ButtonForm().validate():  # the CSRF token was checked before the view
        outcome = emails.remove_by_admin(user, actor=current_user.username, client=client())
        flash(
            messages.text(
                "email_removed" if outcome == emails.CHANGED else "email_none",
                name=user.username,
            ),
            "info",
        )
    return redirect(page)


# --- Audit log ------------------------------------------------------------------------------


@bp.route("/audit")
def audit_page():
    """Every audit event, newest first, filtered by user, event type and dates. Rows
    read as people's words; the recorded names stay beside them and are the filter's
    values, so an administrator can still search and grep by them."""
    form = AuditFilterForm(request.args)
    events = ((e, e) for e in audit_log.event_types())
    form.event.choices = pairs([("", _l("All events")), *events])
    filters = {}
    if form.validate():
        filters = {
            "username": (form.user.data or "").strip().lower() or None,
            "event": form.event.data or None,
            "start": form.start.data,
            "end": form.end.data,
        }
    elif request.args:
        flash(messages.text("bad_audit_filter"), "error")
    return render_template(
        "admin/audit.html",
        form=form,
        result=audit_log.search(**filters, page=_page_number()),
        event_label=messages.event_label,
    )
