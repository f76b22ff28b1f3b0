"""The JSON API for administrators' scripts: read and reset a user's TOTP credential.

It authenticates with `Authorization: Bearer <token>` only, never a browser session,
so no cookie can drive it and no token can open a browser session."""

from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, request

from . import reset, tokens, totp
from .users import find_user

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


def _user_or_404(username: str):
    user = find_user(username)
    if user is None:
        abort(404, description="No such user.")
    return user


@bp.get("/users/<username>/totp")
def totp_status(username):
    """Say whether a user has a confirmed authenticator, and since when."""
    user = _user_or_404(username)
    credential = totp.credential_of(user)
    return jsonify(
        username=user.username,
        enrolled=credential is not None,
        confirmed_at=credential.confirmed_at.isoformat() + "Z" if credential else None,
    )


@bp.delete("/users/<username>/totp")
def totp_reset(username):
    """Remove a user's authenticator and end their sessions; they set up again."""
    user = _user_or_404(username)
    if not reset.reset_totp(user, actor=g.api_user.username):
        abort(404, description="This user has no TOTP credential.")
    return "", 204
