"""Administration » Applications: the apps that sign people in through the portal with
OpenID Connect. Any administrator may read the list; adding one, a new secret and
removing one need a fresh step-up, as the actions on users do. A secret is shown once,
in the response to the POST that made it: never flashed, logged, put in a URL or kept
but as its hash."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, make_response, redirect, render_template, url_for
from flask_login import current_user

from ..core import messages
from ..oidc import clients
from .admin import require_admin, requires_step_up
from .forms import POLICY_CHOICES, ApplicationForm, ButtonForm
from .session_cookie import client

bp = Blueprint("admin_applications", __name__, url_prefix="/admin/applications")
bp.before_request(require_admin)


@dataclass(frozen=True)
class Shown:
    """One application as the pages show it."""

    name: str
    client_id: str
    public: bool
    offline: bool
    policy: str
    subjects: list[str]
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    launch_url: str
    created_at: object
    secret_changed_at: object


def _shown(row) -> Shown:
    return Shown(
        name=row.name,
        client_id=row.client_id,
        public=clients.is_public(row),
        offline=row.offline,
        policy=row.policy,
        subjects=[str(subject) for subject in clients.subjects(row)],
        redirect_uris=clients.redirect_uris(row),
        post_logout_redirect_uris=clients.post_logout_redirect_uris(row),
        launch_url=clients.launch_url(row),
        created_at=row.created_at,
        secret_changed_at=row.secret_changed_at,
    )


@bp.route("")
def applications_page():
    """Every registered application: its client_id, type, policy, who may use it, its
    redirect URIs and when it was added; links to add one, replace a secret, remove one."""
    return render_template(
        "admin/applications.html",
        rows=[_shown(row) for row in clients.all_clients()],
        policies=dict(POLICY_CHOICES),
    )


@bp.route("/new", methods=["GET", "POST"])
@requires_step_up
def new_application():
    """Register an application; its client_id and secret are shown on the next page."""
    form = ApplicationForm()
    if form.validate_on_submit():
        try:
            row, secret = clients.add(
                **form.client(), actor=current_user.username, client=client()
            )
        except clients.ClientError:  # added meanwhile, in another tab or by the command line
            form.name.errors = [messages.text("client_name_taken", name=form.name.data)]
        else:
            return _shown_once(row, secret, added=True)
    status = 400 if form.is_submitted() else 200
    return render_template("admin/application_new.html", form=form), status


def _shown_once(row, secret: str | None, *, added: bool):
    response = make_response(
        render_template(
            "admin/application_secret.html",
            row=_shown(row),
            secret=secret,
            added=added,
            policies=dict(POLICY_CHOICES),
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _row_or_404(client_id: str):
    row = clients.by_client_id(client_id)
    if row is None:
        abort(404)
    return row


@bp.route("/<client_id>/secret", methods=["GET", "POST"])
@requires_step_up
def new_secret(client_id):
    """Confirm, then replace, a confidential application's secret (the old one stops
    working at once); the new one is shown once."""
    row = _row_or_404(client_id)
    if clients.is_public(row):
        abort(404)
    form = ButtonForm()
    if form.validate_on_submit():
        secret = clients.regenerate_secret(row.name, actor=current_user.username, client=client())
        return _shown_once(clients.by_client_id(client_id), secret, added=False)
    return _confirm(row, form, "secret")


@bp.route("/<client_id>/remove", methods=["GET", "POST"])
@requires_step_up
def remove_application(client_id):
    """Confirm, then remove, an application: its codes and tokens stop working at once."""
    row = _row_or_404(client_id)
    form = ButtonForm()
    if form.validate_on_submit():
        clients.remove(row.name, actor=current_user.username, client=client())
        flash(messages.text("client_removed", name=row.name), "info")
        return redirect(url_for("admin_applications.applications_page"))
    return _confirm(row, form, "remove")


def _confirm(row, form, action: str):
    """The page that asks before a new secret or a removal."""
    return render_template(
        "admin/application_action.html",
        form=form,
        row=_shown(row),
        action=action,
        policies=dict(POLICY_CHOICES),
    )
