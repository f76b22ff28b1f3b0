"""The JSON API for administrators' scripts: list users (with their groups), read and
reset a user's TOTP credential, unlock a throttled or locked account.

It authenticates with `Authorization: Bearer <token>` only, never a browser session,
so no cookie can drive it and no token can open a browser session."""

from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, request
from werkzeug.exceptions import MethodNotAllowed

from ..accounts import administration, reset
from ..core.pagination import MAX_PER_PAGE, PER_PAGE
from ..directory import groups, tokens
from ..directory.users import find_user
from ..factors import throttle, totp, webauthn
from .session_cookie import client

MAX_PAGE = 1_000_000
NO_CREDENTIAL = (
    "This user has no TOTP credential. To let a user stuck in set-up try codes again, "
    "POST /api/v1/users/{username}/unlock."
)

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def require_admin_token():
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    user = tokens.user_for_token(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        abort(401)
    if not user.is_admin:
        abort(403)
    g.api_user = user


@bp.before_app_request
def require_token_before_method_not_allowed():
    """A method an API URL does not offer (HEAD on a POST-only URL, say) is refused
    with 405 only after the token is checked: without one, the API answers 401 alike
    whatever is asked, as it does for its routed requests."""
    if isinstance(request.routing_exception, MethodNotAllowed) and request.path.startswith(
        bp.url_prefix + "/"
    ):
        require_admin_token()


def _user_or_404(username: str):
    user = find_user(username)
    if user is None:
        abort(404, description="No such user.")
    return user


@bp.get("/users/<username>/totp")
def totp_status(username):
    """Say whether a user has a confirmed authenticator, and since when; and their
    groups (what the gateway lets through and passes on in Remote-Groups)."""
    user = _user_or_404(username)
    credential = totp.credential_of(user)
    return jsonify(
        username=user.username,
        enrolled=credential is not None,
        confirmed_at=credential.confirmed_at.isoformat() + "Z" if credential else None,
        groups=list(groups.groups_of(user)),
    )


@bp.delete("/users/<username>/totp")
def totp_reset(username):
    """Remove a user's authenticator and end their sessions; they set up again."""
    user = _user_or_404(username)
    # Only a credential is reset here; a throttled or locked account without one (stuck
    # in set-up) is unlocked with POST .../unlock, which does not end its sessions.
    if totp.credential_of(user) is None or not reset.reset_totp(
        user, actor=g.api_user.username, client=client()
    ):
        abort(404, description=NO_CREDENTIAL.format(username=user.username))
    return "", 204


@bp.get("/users/<username>/webauthn")
def webauthn_list(username):
    """A user's passkeys and security keys: name, kind, added, last used, synced."""
    user = _user_or_404(username)
    keys = [webauthn.describe(key) for key in webauthn.credentials_of(user)]
    return jsonify(username=user.username, keys=keys)


@bp.delete("/users/<username>/webauthn")
def webauthn_reset(username):
    """Remove every passkey and security key of a user and end their sessions."""
    user = _user_or_404(username)
    if not reset.reset_keys(user, actor=g.api_user.username, client=client()):
        abort(404, description=f"{user.username!r} has no passkey or security key.")
    return "", 204


class BadParameter(ValueError):
    """A query parameter out of range: 400, with a message saying which."""


@bp.errorhandler(BadParameter)
def bad_parameter(error):
    return jsonify(error=str(error)), 400


def _query_int(name: str, default: int, highest: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= highest):
        raise BadParameter(f"{name} must be a whole number from 1 to {highest}.")
    return int(raw)


@bp.get("/users")
def users_list():
    """List users (by name) with their MFA status and groups; `page`, `per_page`, `q`."""
    page = _query_int("page", 1, MAX_PAGE)
    per_page = _query_int("per_page", PER_PAGE, MAX_PER_PAGE)
    result = administration.list_users(request.args.get("q", ""), page, per_page)
    return jsonify(
        users=[row.as_json() for row in result.items],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
        pages=result.pages,
    )


@bp.post("/users/<username>/unlock")
def unlock(username):
    """Forgive a user's wrong codes so they can try again at once (audited)."""
    user = _user_or_404(username)
    forgiven = throttle.unlock(user, actor=g.api_user.username, client=client())
    return jsonify(username=user.username, unlocked=forgiven > 0, failures_cleared=forgiven)
