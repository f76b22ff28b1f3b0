"""The Cookie header an app behind the gateway may receive: the browser's, less every
cookie of the portal (SC-67). The check answers it on a 200 and the shipped nginx and
Traefik configurations put it on the request in place of the browser's (Caddy strips
the same names with a regular expression of its own, deploy/Caddyfile).

The portal's cookies are the session cookie under its configured name and every name
starting `smfa_` (the anonymous session, the binding, device, trusted-browser and
language cookies), each with or without a `__Host-` / `__Secure-` prefix, in any case.
Pure: no Flask.
"""

from __future__ import annotations

import re

_PREFIX = r"(?:__host-|__secure-)?"


def _portal_names(session_cookie_name: str) -> re.Pattern:
    base = re.escape(session_cookie_name.removeprefix("__Host-").removeprefix("__Secure-"))
    # A name at the start of a pair, or after a comma: a WSGI server joins two Cookie
    # lines with one, and a pair holding a portal cookie that way is dropped whole.
    return re.compile(rf"(?:^|,)\s*{_PREFIX}(?:smfa_[^=,]*|{base})\s*(?:=|,|$)", re.I)


def for_the_app(cookie_header: str | None, session_cookie_name: str) -> str | None:
    """`cookie_header` without the portal's cookies; None when nothing is left."""
    if not cookie_header:
        return None
    portal = _portal_names(session_cookie_name)
    kept = [
        pair.strip()
        for pair in cookie_header.split(";")
        if pair.strip() and not portal.search(pair)
    ]
    return "; ".join(kept) or None
