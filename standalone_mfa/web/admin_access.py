"""Administration » Access rules: the gateway's rules in force (read-only: they live
in the configuration), and a "test a URL" box that says which rule decides a URL and
what it does for nobody signed in and for a given user, so a rule can be checked
before anyone is locked out."""

from __future__ import annotations

from flask import Blueprint, flash, render_template, request

from ..core import messages
from ..directory.users import find_user, normalize_username
from ..gateway import check, origin
from .admin import require_admin
from .forms import AccessTestForm
from .gateway import access_control

bp = Blueprint("admin_access", __name__, url_prefix="/admin/access")
bp.before_request(require_admin)


@bp.route("")
def access_page():
    form = AccessTestForm(request.args)
    explanation = None
    if request.args and form.validate():
        explanation = _explain(form)
    elif request.args:
        flash(messages.text("bad_access_test"), "error")
    return render_template(
        "admin/access.html", form=form, access=access_control(), explanation=explanation
    )


def _explain(form: AccessTestForm):
    try:
        original = origin.from_url(form.url.data, form.method.data)
    except origin.BadOrigin:
        form.url.errors.append(messages.text("bad_access_url"))
        return None
    username = None
    if form.username.data:
        user = find_user(normalize_username(form.username.data))
        if user is None:
            form.username.errors.append(messages.text("no_such_user"))
            return None
        username = user.username
    return check.explain(access_control(), original, username)
