"""Forms sent to the portal from another site are refused before anything reads them
(SC-68). Every name under `SESSION_COOKIE_DOMAIN` is the same *site* as the portal, so
SameSite cookies and the CSRF token do not keep a sibling subdomain out (it can plant
an anonymous cookie and fetch that cookie's form token itself). What the browser says
does: a state-changing request whose `Origin` is not the portal's, or that it marks
`Sec-Fetch-Site: same-site` or `cross-site`, is refused with 403. A browser too old to
send either is let through to the CSRF check, as before.

`Origin: null` says nothing either way: the portal's pages send `Referrer-Policy:
no-referrer`, under which browsers send `null` on every form they post, the portal's
own included (the Fetch standard; Chromium does). `Sec-Fetch-Site` then decides.

The API is left out: it takes a bearer token and no cookie, so nothing rides along."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from flask import request

from ..core import audit, messages
from ..core.clock import now
from ..core.config import setting
from ..core.db import UNAVAILABLE
from .errors import render_error
from .session_cookie import client
from .sessionless import is_sessionless

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# `none`: the person's own action (typed, a bookmark); `same-origin`: the portal's page.
TRUSTED_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, as browsers compare them; None if it
    is not an http(s) one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def portal_origin() -> tuple[str, str, int] | None:
    """The portal's own origin: `GATEWAY_PORTAL_URL`'s when set (the operator's word
    for its public URL), else the one this request was sent to."""
    return origin_of(setting("GATEWAY_PORTAL_URL") or request.host_url)


def from_elsewhere() -> bool:
    """Did the browser say this request comes from another origin?"""
    headers = request._get_current_object().headers
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.strip().lower() not in TRUSTED_FETCH_SITES:
        return True
    sent = headers.get("Origin")
    if sent is None or sent.strip() == "null":
        return False
    return origin_of(sent) != portal_origin()


def refuse_cross_site():
    """Before every request: 403 for a state-changing one from another origin."""
    # The API and the OpenID endpoints that take no cookie (token, userinfo, revocation:
    # `sessionless`) have nothing a forged request could ride on.
    asked = request._get_current_object()  # every request passes here: one lookup
    if asked.method in SAFE_METHODS or is_sessionless(asked.path):
        return None
    if not from_elsewhere():
        return None
    _audit()
    return render_error(403, messages.text("cross_site_form"))


def _audit() -> None:
    """One row a minute per address: enough to see that a site posts here, never a row
    per request of a page that keeps posting."""
    who = client()
    if not audit.cap("cross_site").due(who.ip, now().timestamp()):
        return
    headers = request.headers
    detail = (
        f"{request.method} {request.path[:100]} "
        f"(Sec-Fetch-Site: {_printable(headers.get('Sec-Fetch-Site'))}, "
        f"Origin: {_printable(headers.get('Origin'))})"
    )
    with contextlib.suppress(UNAVAILABLE):  # the refusal stands; only its row is lost
        audit.record("cross_site_refused", "refused", detail=detail, client=who)


def _printable(value: str | None) -> str:
    if value is None:
        return "absent"
    return "".join(c if c.isprintable() else "?" for c in value[:100])
