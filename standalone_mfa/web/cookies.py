"""What a cookie set now looks like: one decision, per request, for every cookie the app
sets, in two scopes.

Shared (`shared_cookie_policy`: the session cookie): with `SESSION_COOKIE_DOMAIN` set,
sent to that domain and every subdomain, at Path=/, so that one sign-in on the portal
opens every app behind the gateway. Portal-only (`portal_cookie_policy`: the anonymous
session's, binding, remembered-device and trusted-browser cookies): never a Domain, so
no other app ever receives them nor, over HTTPS, can set them.

Both are Secure when this request came over HTTPS (directly, or through a proxy
trusted by the `PROXY_FIX_*` settings) or when `SESSION_COOKIE_SECURE` forces it, and
when Secure, named with the prefix browsers reserve for cookies set over HTTPS:
`__Host-` (host-only, at Path=/) where allowed, else `__Secure-` (a Domain, or the app
under a path prefix), so that a plain-HTTP page or a man in the middle cannot plant or
overwrite them (nor, for `__Host-`, a subdomain).

A cookie name the browser sent twice (a sibling subdomain can add one for the whole
domain, which browsers may send first) is read as absent (`single_cookie`, SC-68).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from flask import current_app, request

from ..core.config import setting

HOST_PREFIX = "__Host-"
SECURE_PREFIX = "__Secure-"


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool
    path: str
    domain: str | None
    samesite: str
    httponly: bool = True

    def name(self, base: str) -> str:
        """The cookie's name for this request: `base` with the right prefix."""
        base = base.removeprefix(HOST_PREFIX).removeprefix(SECURE_PREFIX)
        if not self.secure:
            return base
        # __Host- needs Secure, Path=/ and no Domain; __Secure- only Secure.
        if self.path == "/" and not self.domain:
            return HOST_PREFIX + base
        return SECURE_PREFIX + base

    def set(self, response, base: str, value: str, **kwargs) -> None:
        """`response.set_cookie` with this policy's name, path and flags."""
        response.set_cookie(
            self.name(base),
            value,
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
            **kwargs,
        )

    def delete(self, response, base: str) -> None:
        """Tell the browser to drop the cookie `set` would have set."""
        response.delete_cookie(
            self.name(base),
            path=self.path,
            domain=self.domain,
            secure=self.secure,
            httponly=self.httponly,
            samesite=self.samesite,
        )


def _policy(domain: str | None) -> CookiePolicy:
    # Asked for several times per request (each cookie read or set): decided once.
    decided = request._get_current_object().environ.setdefault("smfa.cookie_policies", {})
    policy = decided.get(domain)
    if policy is None:
        policy = decided[domain] = _decide(domain)
    return policy


def _decide(domain: str | None) -> CookiePolicy:
    asked = request._get_current_object()
    return CookiePolicy(
        secure=asked.is_secure or setting("SESSION_COOKIE_SECURE"),
        # Host-only: the mount point ("" at the root, "/mfa-app" under X-Forwarded-Prefix).
        # For a domain: every path, as the apps behind the gateway have their own.
        path="/" if domain else asked.script_root or "/",
        domain=domain,
        samesite=setting("SESSION_COOKIE_SAMESITE"),
        httponly=setting("SESSION_COOKIE_HTTPONLY"),
    )


def shared_cookie_policy() -> CookiePolicy:
    """How the session cookie looks in this request: for the
    whole `SESSION_COOKIE_DOMAIN` when set (already normalised by `config.finish`),
    else host-only (needs a request context)."""
    return _policy(setting("SESSION_COOKIE_DOMAIN"))


def portal_cookie_policy() -> CookiePolicy:
    """How the portal's own cookies look in this request: host-only, whatever
    `SESSION_COOKIE_DOMAIN` says. What they hold vouches for this browser at this
    portal (it may skip the code, it has its own password counter); no app behind the
    gateway needs it, so none is sent it (needs a request context)."""
    return _policy(None)


# The remembered-device cookie (`factors.devices` keeps its token's hash): portal-only,
# Secure and prefixed; Lax so that following a link to the site still carries it.
DEVICE_COOKIE = "smfa_device"


def set_device_cookie(response, token: str, days: int) -> None:
    portal_cookie_policy().set(response, DEVICE_COOKIE, token, max_age=days * 24 * 3600)


def device_token() -> str | None:
    return single_cookie(portal_cookie_policy().name(DEVICE_COOKIE))


# The trusted-browser cookie (`factors.trusted_browsers`, OWASP's device cookie): set
# when a sign-in is complete; its password attempts have their own counter.
# Portal-only, like the remembered device; never skips a step.
TRUSTED_BROWSER_COOKIE = "smfa_browser"


def set_trusted_browser_cookie(response, token: str, days: int) -> None:
    portal_cookie_policy().set(response, TRUSTED_BROWSER_COOKIE, token, max_age=days * 24 * 3600)


def trusted_browser_token() -> str | None:
    return single_cookie(portal_cookie_policy().name(TRUSTED_BROWSER_COOKIE))


def single_cookie(name: str) -> str | None:
    """The cookie `name`'s value if this request carries exactly one cookie of that
    name. Two (a sibling subdomain planted one for the whole domain: whose would be
    believed depends on the order the browser sends them in) count as none (SC-68)."""
    values = request._get_current_object().cookies.getlist(name)
    return values[0] if len(values) == 1 else None


# The binding cookie (SC-67): with `SESSION_COOKIE_DOMAIN`, the session cookie is sent
# to every app behind the gateway, and each could replay it. The portal's own pages
# also ask for this portal-only cookie, an HMAC of the session token under SECRET_KEY:
# no app is sent it (host-only; `__Host-` over HTTPS, so no sibling can set it either)
# and none can work it out from the token. It changes with every new token, and needs
# no row. Lax, as the session cookie: a link from another site (a mail) still opens the
# page it leads to; a cross-site POST carries neither cookie.
BINDING_COOKIE = "smfa_binding"
_BINDING_SALT = b"standalone-mfa.session-binding"


def binding_required() -> bool:
    """Only a domain-wide session cookie needs one: a host-only cookie reaches no other
    host, and the binding would go wherever it goes."""
    return bool(setting("SESSION_COOKIE_DOMAIN"))


def _binding_of(token: str) -> str:
    secret = current_app.secret_key
    key = hmac.new(
        secret.encode() if isinstance(secret, str) else secret, _BINDING_SALT, hashlib.sha256
    ).digest()
    digest = hmac.new(key, token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_bound(token: str) -> bool:
    """Did the browser send, once, the binding cookie of this session token?"""
    sent = single_cookie(portal_cookie_policy().name(BINDING_COOKIE))
    return sent is not None and hmac.compare_digest(sent, _binding_of(token))


def set_binding_cookie(response, token: str) -> None:
    """The binding of a new session token; a browser-session cookie, as the session's."""
    portal_cookie_policy().set(response, BINDING_COOKIE, _binding_of(token))


def delete_binding_cookie(response) -> None:
    portal_cookie_policy().delete(response, BINDING_COOKIE)
