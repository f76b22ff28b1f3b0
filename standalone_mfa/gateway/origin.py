"""What the proxy asks about: the original request, read only from the proxy's own
headers (SC-32, SC-34) and refused when they are missing or malformed.

- nginx `auth_request` (`/auth/nginx`): `X-Original-URL` (the whole URL) and
  `X-Original-Method`.
- Caddy `forward_auth`, Traefik `forwardAuth` (`/auth/forward`): `X-Forwarded-Proto`,
  `-Host`, `-Uri` and `-Method`.

The path the rules see is normalised as the app behind the proxy would read it
(`%61dmin` and `/a/../admin` are `/admin`; `//admin` too): a rule on `^/admin` must not
be walked around by spelling the path another way. Pure: no Flask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.hostnames import is_host_name, is_visible
from .rules import METHODS

MAX_URL_LENGTH = 8192
_PORT = re.compile(r"^[0-9]{1,5}$")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


class BadOrigin(ValueError):
    """The proxy's headers do not describe a request: refuse it."""


@dataclass(frozen=True)
class Original:
    """The request the proxy asks about."""

    url: str  # as the browser asked for it, for `rd`
    scheme: str
    host: str  # lower case, without the port
    path: str  # normalised
    query: str
    method: str

    @property
    def resource(self) -> str:
        """What `resources` patterns are searched in: the path, and the query if any."""
        return f"{self.path}?{self.query}" if self.query else self.path


def from_nginx(headers) -> Original:
    """The original request of an nginx `auth_request` subrequest."""
    url = headers.get("X-Original-URL")
    if not url or len(url) > MAX_URL_LENGTH or not is_visible(url):
        raise BadOrigin("X-Original-URL is missing or malformed")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadOrigin("X-Original-URL is not an absolute http(s) URL")
    if "@" in parts.netloc:
        raise BadOrigin("X-Original-URL has user information")
    host = _host(parts.netloc)
    method = _method(headers.get("X-Original-Method"))
    return Original(
        url, parts.scheme, host, normalise_path(parts.path or "/"), parts.query, method
    )


def from_forwarded(headers) -> Original:
    """The original request of a Caddy `forward_auth` or Traefik `forwardAuth` check."""
    scheme = (headers.get("X-Forwarded-Proto") or "").lower()
    netloc = headers.get("X-Forwarded-Host") or ""
    uri = headers.get("X-Forwarded-Uri") or ""
    method = _method(headers.get("X-Forwarded-Method"))
    if scheme not in ("http", "https"):
        raise BadOrigin("X-Forwarded-Proto is missing or not http(s)")
    if "," in netloc or "@" in netloc or not is_visible(netloc or " "):
        raise BadOrigin("X-Forwarded-Host is missing or malformed")
    if (
        not uri.startswith("/")
        or uri.startswith("//")
        or len(uri) > MAX_URL_LENGTH
        or not is_visible(uri)
    ):
        raise BadOrigin("X-Forwarded-Uri is missing or malformed")
    host = _host(netloc)
    path, _, query = uri.partition("?")
    query = query.partition("#")[0]
    url = f"{scheme}://{netloc.lower()}{uri}"
    return Original(url, scheme, host, normalise_path(path), query, method)


def _method(value: str | None) -> str:
    method = (value or "").upper()
    if method not in METHODS:
        raise BadOrigin("the original method is missing or unknown")
    return method


def _host(netloc: str) -> str:
    host, colon, port = netloc.lower().rpartition(":")
    if not colon or "]" in port:
        host, port = netloc.lower(), ""
    elif not _PORT.fullmatch(port):
        raise BadOrigin("the original host has a malformed port")
    if not is_host_name(host):
        raise BadOrigin("the original host is not a host name")
    return host


def normalise_path(raw: str) -> str:
    """The path as an app would route it: unreserved characters unescaped, `.` and
    `..` segments resolved, repeated slashes merged. Other escapes (`%2F`, `%00`) stay
    as they are; a malformed escape is refused."""
    if "%" in raw:
        if re.search(r"%(?![0-9A-Fa-f]{2})", raw):
            raise BadOrigin("the original path has a malformed escape")
        raw = _ESCAPE.sub(_unescape_unreserved, raw)
    segments: list[str] = []
    for segment in raw.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    path = "/" + "/".join(segments)
    if raw.endswith(("/", "/.", "/..")) and segments:
        path += "/"
    return path


def _unescape_unreserved(match: re.Match) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def from_url(url: str, method: str = "GET") -> Original:
    """A request for `url` (the admin page's "test a URL" box): read as nginx's would be."""
    return from_nginx({"X-Original-URL": url.strip(), "X-Original-Method": method})


def portal_url(value: str) -> str | None:
    """`GATEWAY_PORTAL_URL` without its trailing slash, or None if it is not an http(s)
    URL of a host (an optional path prefix is kept; no query, no fragment)."""
    if not isinstance(value, str) or not is_visible(value):
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment:
        return None
    if not parts.netloc or "@" in parts.netloc:
        return None
    try:
        _host(parts.netloc)
    except BadOrigin:
        return None
    return value.rstrip("/")
