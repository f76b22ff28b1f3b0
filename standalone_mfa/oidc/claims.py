"""What the portal says about a person to an application: `sub` (random, made at first
use, never the username), `preferred_username`, the confirmed address, groups, and how
the session signed in (`amr`, RFC 8176; `acr`). The same claims go in the ID token and
userinfo, by scope; `groups` is ours and is added after any standard filtering (Authlib's
`UserInfo.filter` would drop it)."""

from __future__ import annotations

import secrets

from ..core.models import User
from ..gateway import rules
from ..signin import methods

SCOPES = ("openid", "profile", "email", "groups", "offline_access")
CLAIMS = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "at_hash",
    "preferred_username",
    "name",
    "email",
    "email_verified",
    "groups",
)
# `acr` names the strongest of the client policies the sign-in satisfies (the gateway's
# words): a value an application can require.
ACR_VALUES = (rules.ONE_FACTOR, rules.TWO_FACTOR, rules.PHISHING_RESISTANT)


def subject_of(user: User) -> str:
    """The user's `sub`, made at first use by one conditional UPDATE (two requests
    racing agree on the one that won). The first authorization code makes it, so the
    token and userinfo endpoints find it made."""
    if user.oidc_subject:
        return user.oidc_subject
    made = secrets.token_urlsafe(24)
    User.update(oidc_subject=made).where(
        (User.id == user.id) & User.oidc_subject.is_null()
    ).execute()
    user.oidc_subject = User.select(User.oidc_subject).where(User.id == user.id).scalar()
    return user.oidc_subject


def scopes(scope: str | None) -> frozenset[str]:
    return frozenset((scope or "").split())


def user_claims(user: User, scope: str | None, groups) -> dict:
    """The claims `scope` asks for (`sub` always)."""
    asked = scopes(scope)
    claims = {"sub": subject_of(user)}
    if "profile" in asked:
        claims["preferred_username"] = user.username
        claims["name"] = user.username
    if "email" in asked and user.email:
        # User.email is the confirmed address; one waiting for its link is never sent.
        claims["email"] = user.email
        claims["email_verified"] = True
    if "groups" in asked:
        claims["groups"] = list(groups)
    return claims


def sign_in_facts(recorded_methods: str | None, second_factor: bool) -> tuple[list[str], str]:
    """(`amr`, `acr`) of a session from its recorded sign-in methods."""
    proven = methods.parse(recorded_methods)
    if methods.phishing_resistant(proven):
        acr = rules.PHISHING_RESISTANT
    elif second_factor:
        acr = rules.TWO_FACTOR
    else:
        acr = rules.ONE_FACTOR
    return methods.amr(proven), acr
