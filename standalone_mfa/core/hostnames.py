"""Host names, the one grammar for them: what `SESSION_COOKIE_DOMAIN` may be, which
host a `rd` URL may name, what the gateway's rules and the proxies' headers may carry.
A host is "under" a domain when it is that domain or a name below it: the hosts the
session cookie reaches (`example.com` covers `auth.example.com`, not `evilexample.com`).
"""

from __future__ import annotations

import re

# A lower-case DNS name: labels of 1-63 letters, digits and inner hyphens, 253 in all.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*",
    re.ASCII,
)
_VISIBLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what a URL may hold


def is_host_name(name: str) -> bool:
    """A lower-case DNS name (no trailing dot, no port, no address in brackets)."""
    return bool(_HOST_NAME.fullmatch(name))


def is_visible(text: str) -> bool:
    """Printable ASCII without spaces, and not empty."""
    return bool(_VISIBLE.fullmatch(text))


def is_under(host: str, domain: str) -> bool:
    """Whether `host` is `domain` or a name below it (both compared in lower case; a
    leading dot on `domain` is ignored, as browsers do)."""
    host, domain = host.lower(), domain.lower().removeprefix(".")
    return bool(domain) and (host == domain or host.endswith("." + domain))


_ORIGIN = re.compile(r"(https?)://([^/:?#@]+)(?::([1-9][0-9]{0,4}))?", re.ASCII)


def origin_host(origin: str) -> str | None:
    """The host of an origin as a browser writes it (`https://auth.example.com:8443`:
    scheme, lower-case host name, a port only if not the scheme's default), else None."""
    match = _ORIGIN.fullmatch(origin)
    if match is None or not is_host_name(match[2]):
        return None
    scheme, host, port = match.groups()
    if port and (int(port) > 65535 or port == {"http": "80", "https": "443"}[scheme]):
        return None
    return host


def is_origin(origin: str) -> bool:
    return origin_host(origin) is not None
