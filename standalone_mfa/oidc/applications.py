"""The applications a person sees on the portal's home page: the OpenID clients whose
subjects name them, and the gateway apps the `APPLICATIONS` setting lists that the
gateway's rules do not deny them. A list of links, not a permission: each app (or the
gateway in front of it) still decides at the door."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urldefrag, urlsplit

from ..core.models import OidcClient
from ..gateway import origin, rules
from . import clients

OPENID = "openid"
GATEWAY = "gateway"


@dataclass(frozen=True)
class Application:
    name: str
    url: str
    kind: str  # OPENID or GATEWAY

    @property
    def host(self) -> str:
        """What the list shows under the name: where the link goes."""
        return urlsplit(self.url).netloc


def gateway_allows(access: rules.AccessControl, url: str, username: str, groups) -> bool:
    """Whether the rules let this person through to `url` (any policy but deny, read
    every way the gateway reads a request: the strictest wins, as at the door). A URL
    the gateway could not read is not offered."""
    try:
        asked = origin.from_url(urldefrag(url).url)  # a fragment never reaches a server
    except origin.BadOrigin:
        return False
    groups = frozenset(groups)
    return all(
        access.verdict(asked.host, resource, method, username, groups).policy != rules.DENY
        for resource, method in asked.asked
    )


def for_person(
    username: str,
    groups,
    *,
    configured=(),
    access: rules.AccessControl | None = None,
    openid_clients: list[OidcClient] | None = None,
) -> list[Application]:
    """The person's applications, by name. `configured`: the `APPLICATIONS` setting's
    {name, url} entries; `access`: the gateway's rules (None: no gateway is set up, so
    nothing of it filters the list)."""
    groups = frozenset(groups)
    found = [
        Application(row.name, clients.launch_url(row), OPENID)
        for row in (clients.all_clients() if openid_clients is None else openid_clients)
        if clients.may_use(row, username, groups)
    ]
    found += [
        Application(entry["name"], entry["url"], GATEWAY)
        for entry in configured or ()
        if access is None or gateway_allows(access, entry["url"], username, groups)
    ]
    return sorted(found, key=lambda app: (app.name.casefold(), app.url))
