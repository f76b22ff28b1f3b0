"""API bearer tokens: made by the CLI, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

from ..core import audit, crypto
from ..core.clock import now
from ..core.models import ApiToken, User

PREFIX = "smfa_"


def create_token(user: User, *, actor: str) -> str:
    token = PREFIX + crypto.new_token()
    ApiToken.create(user=user, token_hash=crypto.hash_token(token), created_at=now())
    audit.record("token_created", "ok", user=user, actor=actor)
    return token


def tokens_of(user: User) -> list[ApiToken]:
    return list(ApiToken.select().where(ApiToken.user == user).order_by(ApiToken.id))


def revoke_tokens(user: User, *, actor: str, token_id: int | None = None) -> int:
    """Delete one token of `user` (by its number) or all of them; audited."""
    query = ApiToken.delete().where(ApiToken.user == user)
    if token_id is not None:
        query = query.where(ApiToken.id == token_id)
    count = query.execute()
    audit.record(
        "token_revoked",
        "ok" if count else "unchanged",
        user=user,
        actor=actor,
        detail=f"{count} tokens" if token_id is None else f"token {token_id}",
    )
    return count


def user_for_token(token: str | None) -> User | None:
    if not token or len(token) > 200:
        return None
    row = (
        ApiToken.select(ApiToken, User)
        .join(User)
        .where(ApiToken.token_hash == crypto.hash_token(token))
        .get_or_none()
    )
    if row is None:
        return None
    ApiToken.update(last_used_at=now()).where(ApiToken.id == row.id).execute()
    return row.user
