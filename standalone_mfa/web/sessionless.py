"""Requests without a session: the one rule for the session interface, which opens the
session before Flask routes the request, and for the guard, which runs after.

The API authenticates with bearer tokens only (a browser's cookie neither signs a call
in nor is kept alive by one); the health probe and the metrics answer for the process
alone; the gateway's checks read the cookie themselves and never make a session; static
files need no one. For these, no session is loaded, touched, created or set, and the
guard sends no one anywhere. The paths are read from the app's own routes at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

SESSIONLESS_BLUEPRINTS = frozenset({"api", "health", "gateway", "metrics", "oidc_api"})
_KEY = "standalone_mfa.sessionless"


@dataclass(frozen=True)
class Paths:
    exact: frozenset[str]
    prefixes: tuple[str, ...]

    def __contains__(self, path: str) -> bool:
        return path in self.exact or path.startswith(self.prefixes)


def init_app(app) -> None:
    """After every blueprint is registered: the paths of the sessionless ones (all of
    a blueprint's URL prefix, or each of its routes), and the static files'."""
    exact, prefixes = set(), {app.static_url_path + "/"}
    for name in SESSIONLESS_BLUEPRINTS & set(app.blueprints):
        prefix = (app.blueprints[name].url_prefix or "").rstrip("/")
        if prefix:
            exact.add(prefix)
            prefixes.add(prefix + "/")
    for rule in app.url_map.iter_rules():
        if rule.endpoint.partition(".")[0] in SESSIONLESS_BLUEPRINTS and "." in rule.endpoint:
            fixed, converter, _ = rule.rule.partition("<")
            (prefixes if converter else exact).add(fixed)
    app.extensions[_KEY] = Paths(frozenset(exact), tuple(sorted(prefixes)))


def is_sessionless(path: str) -> bool:
    """Whether a request for `path` (below the app's mount point) has no session."""
    return path in current_app._get_current_object().extensions[_KEY]
