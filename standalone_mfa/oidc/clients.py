"""The applications an administrator registered as OpenID Connect clients: adding,
listing, removing them, a new secret, and the checks the protocol asks of them (who
may use one, its redirect URIs, its secret).

A confidential client's secret is 256 random bits shown once; only its SHA-256 is
kept and it is compared in constant time (SC-60). A public client has none and must
use PKCE like every client. Redirect URIs are matched exactly, byte for byte (SC-57):
https, or http on a loopback address (RFC 8252), without a fragment or credentials."""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from urllib.parse import urlsplit

from ..core import audit, crypto, names
from ..core.audit import NO_CLIENT, Client
from ..core.clock import now
from ..core.db import write_transaction
from ..core.models import OidcClient, OidcToken
from ..gateway import rules

POLICIES = (rules.ONE_FACTOR, rules.TWO_FACTOR, rules.PHISHING_RESISTANT)
NAME_MAX_LENGTH = 64
MAX_REDIRECT_URIS = 20
URI_MAX_LENGTH = 2048
SECRET_BYTES = 32
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class ClientError(ValueError):
    """A client cannot be added or changed as asked; the message says why (English:
    the command line and the administrators' page show it)."""


def _hash(secret: str) -> str:
    return crypto.hash_token("oidc-client-secret:" + secret)


def check_name(raw: str | None) -> str:
    """A name as administrators tell applications apart ("Grafana"): 1-64 printable
    characters, spaces collapsed."""
    name = names.display_name(raw, NAME_MAX_LENGTH)
    if name is None:
        raise ClientError(f"A client's name is 1-{NAME_MAX_LENGTH} printable characters.")
    return name


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str) -> str:
    """A redirect (or post-logout redirect) URI as registered: absolute https, or http
    on a loopback address; no fragment, no user or password. Kept as written: it is
    later compared exactly."""
    if not uri or len(uri) > URI_MAX_LENGTH or uri != uri.strip():
        raise ClientError(f"Redirect URI {uri!r} is empty, too long or has spaces around it.")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as error:
        raise ClientError(f"Redirect URI {uri!r} is not a URL ({error}).") from None
    if parts.fragment or "#" in uri:
        raise ClientError(f"Redirect URI {uri!r} has a fragment: it cannot.")
    if parts.username is not None or parts.password is not None:
        raise ClientError(f"Redirect URI {uri!r} holds a user name or password.")
    if not host:
        raise ClientError(f"Redirect URI {uri!r} names no host.")
    if any(c.isspace() or names.is_control(c) for c in uri):
        raise ClientError(f"Redirect URI {uri!r} has spaces or control characters.")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host)):
        return uri
    raise ClientError(f"Redirect URI {uri!r} must use https (http only on a loopback address).")


def _uris(values, *, required: bool) -> list[str]:
    uris = []
    for value in values or ():
        uri = check_redirect_uri(value)
        if uri not in uris:
            uris.append(uri)
    if required and not uris:
        raise ClientError("A client needs at least one redirect URI.")
    if len(uris) > MAX_REDIRECT_URIS:
        raise ClientError(f"A client has at most {MAX_REDIRECT_URIS} redirect URIs.")
    return uris


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ClientError(f"The policy is one of {', '.join(POLICIES)}, not {policy!r}.")
    return policy


def check_subjects(values) -> list[str]:
    """Each `user:NAME` or `group:NAME`, as the gateway's rules write them."""
    found = []
    for value in values or ():
        try:
            text = str(rules.subject(value.strip()))
        except rules.RulesError as error:
            raise ClientError(str(error)) from None
        if text not in found:
            found.append(text)
    return found


def add(
    name: str,
    redirect_uris,
    *,
    public: bool = False,
    policy: str = rules.TWO_FACTOR,
    subjects=(),
    offline: bool = False,
    post_logout_redirect_uris=(),
    launch_url: str | None = None,
    actor: str,
    client: Client = NO_CLIENT,
) -> tuple[OidcClient, str | None]:
    """Register a client; returns it and its secret (None for a public client), which
    is shown once and never again."""
    name = check_name(name)
    uris = _uris(redirect_uris, required=True)
    logout_uris = _uris(post_logout_redirect_uris, required=False)
    policy = check_policy(policy)
    subject_texts = check_subjects(subjects)
    if launch_url:
        launch_url = check_redirect_uri(launch_url)
    secret = None if public else secrets.token_urlsafe(SECRET_BYTES)
    at = now()
    with write_transaction():
        if OidcClient.select().where(OidcClient.name == name).exists():
            raise ClientError(f"A client named {name!r} exists already.")
        row = OidcClient.create(
            name=name,
            client_id=secrets.token_urlsafe(18),
            secret_hash=None if secret is None else _hash(secret),
            redirect_uris="\n".join(uris),
            post_logout_redirect_uris="\n".join(logout_uris),
            policy=policy,
            subjects=" ".join(subject_texts),
            offline=offline,
            launch_url=launch_url or None,
            created_at=at,
            secret_changed_at=None if secret is None else at,
        )
        audit.record("oidc_client_added", audit.CHANGED, actor=actor, detail=name, client=client)
    return row, secret


def all_clients() -> list[OidcClient]:
    return list(OidcClient.select().order_by(OidcClient.name))


def by_name(name: str) -> OidcClient | None:
    return OidcClient.get_or_none(OidcClient.name == " ".join((name or "").split()))


def could_be_client_id(client_id: str | None) -> bool:
    return bool(client_id) and _CLIENT_ID.fullmatch(client_id) is not None


def by_client_id(client_id: str | None) -> OidcClient | None:
    """The client a request names (None for an unknown or malformed id: one query
    only for ids that could be ours)."""
    if not could_be_client_id(client_id):
        return None
    return OidcClient.get_or_none(OidcClient.client_id == client_id)


def remove(name: str, *, actor: str, client: Client = NO_CLIENT) -> bool:
    """Remove a client; its codes and tokens go with it (they stop working at once)."""
    with write_transaction():
        row = by_name(name)
        if row is None:
            return False
        OidcToken.delete().where(OidcToken.client == row).execute()
        row.delete_instance(recursive=True)
        audit.record(
            "oidc_client_removed", audit.CHANGED, actor=actor, detail=row.name, client=client
        )
    return True


def regenerate_secret(name: str, *, actor: str, client: Client = NO_CLIENT) -> str:
    """A new secret for a confidential client (the old one stops working at once);
    returned once."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    with write_transaction():
        row = by_name(name)
        if row is None:
            raise ClientError(f"There is no client named {name!r}.")
        if row.secret_hash is None:
            raise ClientError(f"{row.name!r} is a public client: it has no secret.")
        row.secret_hash = _hash(secret)
        row.secret_changed_at = now()
        row.save()
        audit.record(
            "oidc_client_secret", audit.CHANGED, actor=actor, detail=row.name, client=client
        )
    return secret


# --- What the protocol asks of a client ---------------------------------------------------


def is_public(row: OidcClient) -> bool:
    return row.secret_hash is None


def check_secret(row: OidcClient, secret: str | None) -> bool:
    """Whether `secret` is the confidential client's (constant time: hashes compared)."""
    if row.secret_hash is None or not secret or len(secret) > 512:
        return False
    return hmac.compare_digest(row.secret_hash, _hash(secret))


def redirect_uris(row: OidcClient) -> list[str]:
    return [uri for uri in row.redirect_uris.split("\n") if uri]


def post_logout_redirect_uris(row: OidcClient) -> list[str]:
    return [uri for uri in row.post_logout_redirect_uris.split("\n") if uri]


def has_redirect_uri(row: OidcClient, uri: str | None) -> bool:
    """Exact match only (SC-57): no prefix, no normalisation, no added path or query."""
    return bool(uri) and uri in redirect_uris(row)


def subjects(row: OidcClient) -> tuple[rules.Subject, ...]:
    return tuple(rules.subject(text) for text in row.subjects.split())


def may_use(row: OidcClient, username: str, groups) -> bool:
    """Whether the person is among the client's subjects (none named: anyone)."""
    named = subjects(row)
    groups = frozenset(groups)
    return not named or any(s.matches(username, groups) for s in named)


def launch_url(row: OidcClient) -> str:
    """Where the home page's link goes: the registered launch URL, or the origin of
    the first redirect URI (most apps start their sign-in from their front page)."""
    if row.launch_url:
        return row.launch_url
    parts = urlsplit(redirect_uris(row)[0])
    return f"{parts.scheme}://{parts.netloc}/"
