"""Where a browser may be sent after signing in (or out): a path on this site
(`next`), or a URL of an app the gateway protects (`rd`, SC-33).

`rd` is followed only when it is an http(s) URL whose host is `SESSION_COOKIE_DOMAIN`
or a name below it: the session cookie reaches exactly those hosts, so nothing else
can be a protected app. Look-alikes (`example.com.evil.org`, `evilexample.com`),
user information (`https://example.com@evil.org`), other schemes, escaped or
backslashed hosts and control characters are all refused, by parsing what is there
rather than searching it for something bad.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..core.hostnames import is_host_name, is_under, is_visible

MAX_LENGTH = 2048


def safe_next_path(target: str | None) -> str | None:
    """`target` if it is a relative path on this site, else None."""
    if not target or len(target) > MAX_LENGTH or "\\" in target or not target.isprintable():
        return None
    # "//host" and "///host" are read by browsers as another site.
    if not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def safe_return_url(target: str | None, cookie_domain: str | None) -> str | None:
    """`target` if it is an http(s) URL on `cookie_domain` or below it, else None."""
    if not target or not cookie_domain or len(target) > MAX_LENGTH:
        return None
    if not is_visible(target) or "\\" in target:
        return None
    try:
        parts = urlsplit(target)
        port = parts.port  # a malformed port raises
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not target.lower().startswith(
        parts.scheme + "://"
    ):
        return None
    if "@" in parts.netloc or port == 0:
        return None
    host = parts.hostname or ""  # lower case; a trailing dot is refused below
    if not is_host_name(host):
        return None
    if not is_under(host, cookie_domain):
        return None
    return target


def safe_destination(target: str | None, cookie_domain: str | None) -> str | None:
    """A path on this site, or a protected app's URL; None for anything else."""
    return safe_next_path(target) or safe_return_url(target, cookie_domain)


def is_absolute(target: str) -> bool:
    return not target.startswith("/")
