"""What a cookie set now looks like: one decision, per request, for every cookie the app
sets (the session cookie, and any other such as a remembered device).

Secure when this request came over HTTPS (directly, or through a proxy trusted by the
`PROXY_FIX_*` settings) or when `SESSION_COOKIE_SECURE` forces it; scoped to the path
the app is mounted at; and, when Secure, named with the prefix browsers reserve for
cookies set over HTTPS (`__Host-` at path /, else `__Secure-`), so that a plain-HTTP
page, a subdomain or a man in the middle cannot plant or overwrite it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request

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


def cookie_policy() -> CookiePolicy:
    """How cookies set during the current request must look (needs a request context)."""
    config = current_app.config
    return CookiePolicy(
        secure=request.is_secure or bool(config["SESSION_COOKIE_SECURE"]),
        # The mount point: "" at the root, "/mfa-app" under X-Forwarded-Prefix.
        path=request.script_root or "/",
        domain=config.get("SESSION_COOKIE_DOMAIN") or None,
        samesite=config["SESSION_COOKIE_SAMESITE"],
        httponly=bool(config["SESSION_COOKIE_HTTPONLY"]),
    )


# The remembered-device cookie (`factors.devices` keeps its token's hash): Secure,
# prefixed and scoped like the session cookie; Lax so that following a link to the
# site still carries it.
DEVICE_COOKIE = "smfa_device"


def set_device_cookie(response, token: str, days: int) -> None:
    cookie_policy().set(response, DEVICE_COOKIE, token, max_age=days * 24 * 3600)


def device_token() -> str | None:
    return request.cookies.get(cookie_policy().name(DEVICE_COOKIE))


# The trusted-browser cookie (`factors.trusted_browsers`, OWASP's device cookie): set
# when a sign-in is complete; its password attempts have their own counter. Same
# policy as the others; never skips a step.
TRUSTED_BROWSER_COOKIE = "smfa_browser"


def set_trusted_browser_cookie(response, token: str, days: int) -> None:
    cookie_policy().set(response, TRUSTED_BROWSER_COOKIE, token, max_age=days * 24 * 3600)


def trusted_browser_token() -> str | None:
    return request.cookies.get(cookie_policy().name(TRUSTED_BROWSER_COOKIE))
