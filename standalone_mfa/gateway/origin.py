"""What the proxy asks about: the original request, read only from the proxy's own
headers (SC-32, SC-34) and refused when they are missing or malformed (SC-65).

- nginx `auth_request` (`/auth/nginx`): `X-Original-URL` (the whole URL:
  `$scheme://$host$request_uri`) and `X-Original-Method`.
- Caddy `forward_auth`, Traefik `forwardAuth` (`/auth/forward`): `X-Forwarded-Proto`,
  `-Host`, `-Uri` and `-Method`.

The host is `host[:port]` and nothing else; the URL has a path, no fragment. The path
is judged in every spelling the app behind the proxy could read (SC-66, see
`path_spellings` and docs/gateway/paths-and-methods.md); the method is any RFC 9110
token, judged as sent and upper-cased (SC-48). Pure: no Flask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.hostnames import is_host_name, is_visible
from .rules import is_method

MAX_URL_LENGTH = 8192
MAX_DECODINGS = 2  # an app that decodes a path twice is seen; three times is refused
_PORT = re.compile(r"[0-9]{1,5}")
# Printable ASCII (`is_visible`) split by hand: no fragment anywhere, a path that starts
# with "/", a netloc with none of "/?#" (what it may hold is `_host`'s to say).
_ABSOLUTE_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(/[^?#]*)(?:\?([^#]*))?")
_ORIGIN_FORM = re.compile(r"(/[^?#]*)(?:\?([^#]*))?")
_ESCAPES = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Only a path with one of these has another spelling (or is refused): the rest, most
# paths, are judged as they are with this one search.
_SPECIAL = re.compile(r"[%\\;]|//|(?:^|/)\.\.?(?:/|$)")
# Characters that change how an app splits or reads a path: kept escaped in the path
# the rules see, and decoded only in the other spellings.
_STRUCTURAL = frozenset("/\\;%?#")
_DOT_SEGMENTS = frozenset({".", ".."})
_SLASHES = re.compile(r"/{2,}")
_PARAMETERS = re.compile(r";[^/]*")


class BadOrigin(ValueError):
    """The proxy's headers do not describe a request: refuse it."""


@dataclass(frozen=True)
class Original:
    """The request the proxy asks about."""

    url: str  # as the browser asked for it, for `rd`
    scheme: str
    host: str  # lower case, without the port
    path: str  # the spelling the rules are written for (shown and audited)
    query: str
    method: str  # as sent (methods are case-sensitive)
    paths: tuple[str, ...] = ()  # every spelling of the path, `path` first
    methods: tuple[str, ...] = ()  # the method as sent, then upper-cased if different

    @property
    def resource(self) -> str:
        """What `resources` patterns are searched in: the path, and the query if any."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def asked(self) -> tuple[tuple[str, str], ...]:
        """Every (resource, method) an app could read this request as: the rules judge
        each, and the strictest answer is kept (`check.decide`)."""
        query = f"?{self.query}" if self.query else ""
        paths, methods = self.paths or (self.path,), self.methods or (self.method,)
        return tuple((p + query, m) for p in paths for m in methods)


def _original(url, scheme, host, raw_path, query, method) -> Original:
    paths = path_spellings(raw_path)
    methods = (method,) if method.upper() == method else (method, method.upper())
    return Original(url, scheme, host, paths[0], query, method, paths, methods)


def from_nginx(headers) -> Original:
    """The original request of an nginx `auth_request` subrequest."""
    url = headers.get("X-Original-URL")
    if not url or len(url) > MAX_URL_LENGTH or not is_visible(url):
        raise BadOrigin("X-Original-URL is missing or malformed")
    parts = _ABSOLUTE_URL.fullmatch(url)
    if parts is None:
        raise BadOrigin("X-Original-URL is not scheme://host[:port]/path[?query]")
    scheme, netloc, path, query = parts.groups()
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise BadOrigin("X-Original-URL is not an http(s) URL")
    method = _method(headers.get("X-Original-Method"))
    return _original(url, scheme, _host(netloc), path, query or "", method)


def from_forwarded(headers) -> Original:
    """The original request of a Caddy `forward_auth` or Traefik `forwardAuth` check."""
    scheme = (headers.get("X-Forwarded-Proto") or "").lower()
    netloc = headers.get("X-Forwarded-Host") or ""
    uri = headers.get("X-Forwarded-Uri") or ""
    method = _method(headers.get("X-Forwarded-Method"))
    if scheme not in ("http", "https"):
        raise BadOrigin("X-Forwarded-Proto is missing or not http(s)")
    if not netloc or not is_visible(netloc):
        raise BadOrigin("X-Forwarded-Host is missing or malformed")
    if len(uri) > MAX_URL_LENGTH or not is_visible(uri or " ") or uri.startswith("//"):
        raise BadOrigin("X-Forwarded-Uri is missing or malformed")
    parts = _ORIGIN_FORM.fullmatch(uri)
    if parts is None:
        raise BadOrigin("X-Forwarded-Uri is not /path[?query]")
    path, query = parts.groups()
    host = _host(netloc)
    url = f"{scheme}://{netloc.lower()}{uri}"
    return _original(url, scheme, host, path, query or "", method)


def _method(value: str | None) -> str:
    if not value or not is_method(value):
        raise BadOrigin("the original method is missing or not an HTTP method token")
    return value


def _host(netloc: str) -> str:
    """The host of `host[:port]`, lower case; anything else (user information, a
    fragment or query marker, a port out of 1-65535, an address) is refused."""
    host, colon, port = netloc.lower().rpartition(":")
    if not colon:
        host = port
    elif not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        raise BadOrigin("the original host has a malformed port")
    if not is_host_name(host):
        raise BadOrigin("the original host is not host[:port]")
    return host


def path_spellings(raw: str) -> tuple[str, ...]:
    """Every spelling of `raw` an app behind the proxy could route on, the one the
    rules are written for first: escapes of ordinary characters decoded (`%61`, `%40`,
    `%20`, UTF-8), repeated slashes merged, and escapes that change how a path splits
    (`%2F`, `%5C`, `%3B`, `%25`, `%3F`, `%23`) kept. Then, where the path has them, the
    same path with `%2F`, `%5C` and `\\` read as `/`, with `;` parameters cut from each
    segment, and decoded once more (an app that decodes twice). Refused: a malformed
    escape, a control character, a dot segment (`.`, `..`, `%2e%2e`, `..;`) in any
    spelling, and a path still encoded after `MAX_DECODINGS`."""
    if not _SPECIAL.search(raw):
        return (raw,)
    if _BAD_ESCAPE.search(raw):
        raise BadOrigin("the original path has a malformed escape")
    found: list[str] = []
    text = raw
    for depth in range(MAX_DECODINGS):
        text = _decode_ordinary(text)
        for spelling in _readings(text):
            if spelling not in found:
                found.append(spelling)
        if "%25" not in text:
            return tuple(found)
        if depth + 1 < MAX_DECODINGS:
            text = text.replace("%25", "%")
            if _BAD_ESCAPE.search(text):
                return tuple(found)  # a literal "%" (such as "100%.txt"): nothing more
    raise BadOrigin("the original path is encoded more than twice")


def _decode_ordinary(text: str) -> str:
    """Escapes decoded, except those of structural characters (kept, upper case) and of
    bytes that are not UTF-8 (kept). A control character is refused."""
    if "%" not in text:
        _refuse_controls(text)
        return text
    return _ESCAPES.sub(_decoded_run, text)


def _decoded_run(match: re.Match) -> str:
    run = bytes.fromhex(match.group(0).replace("%", ""))
    decoded = run.decode("utf-8", errors="surrogateescape")
    _refuse_controls(decoded)
    out = []
    for char in decoded:
        if char in _STRUCTURAL or "\udc80" <= char <= "\udcff":
            code = ord(char) - 0xDC00 if char >= "\udc80" else ord(char)
            out.append(f"%{code:02X}")
        else:
            out.append(char)
    return "".join(out)


def _refuse_controls(text: str) -> None:
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise BadOrigin("the original path holds a control character")


def _readings(text: str) -> list[str]:
    """`text` as the rules see it, and as apps that split on `%2F`, `%5C` and `\\`, or
    cut `;` parameters, would read it."""
    readings = [text]
    if "%2F" in text or "%5C" in text or "\\" in text:
        readings.append(text.replace("%2F", "/").replace("%5C", "/").replace("\\", "/"))
    if ";" in text or "%3B" in text:
        readings += [_PARAMETERS.sub("", r.replace("%3B", ";")) for r in list(readings)]
    spellings = []
    for reading in readings:
        if any(segment in _DOT_SEGMENTS for segment in reading.split("/")):
            raise BadOrigin("the original path has a dot segment")
        spelling = _SLASHES.sub("/", reading)
        if spelling not in spellings:
            spellings.append(spelling)
    return spellings


def from_url(url: str, method: str = "GET") -> Original:
    """A request for `url` (the admin page's "test a URL" box): read as nginx's would
    be, with "/" for a URL that has no path."""
    url = url.strip()
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", url):
        url += "/"
    return from_nginx({"X-Original-URL": url, "X-Original-Method": method})


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
