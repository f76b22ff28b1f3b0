"""oidc/applications: what the home page lists for a person. OpenID clients by their
subjects; the APPLICATIONS entries by the gateway's rules for that person's name and
groups (every reading of the URL, as at the door: one deny hides it)."""

from __future__ import annotations

from standalone_mfa.gateway import rules
from standalone_mfa.oidc import applications

ACCESS = rules.parse(
    {
        "default_policy": "deny",
        "rules": [
            {"domain": "*.example.test", "resources": ["^/admin/"], "policy": "deny"},
            {"domain": "ops.example.test", "subject": "group:ops", "policy": "two_factor"},
            {"domain": "ops.example.test", "policy": "deny"},
            {"domain": "*.example.test", "policy": "one_factor"},
        ],
    }
)
ENTRIES = [
    {"name": "Ops", "url": "https://ops.example.test/"},
    {"name": "wiki", "url": "https://wiki.example.test/"},
    {"name": "Admin", "url": "https://wiki.example.test/admin/"},
    {"name": "Encoded admin", "url": "https://wiki.example.test/%61dmin/"},
    {"name": "Outside", "url": "https://outside.test/"},
]


def names(username, groups, access=ACCESS):
    found = applications.for_person(
        username, groups, configured=ENTRIES, access=access, openid_clients=[]
    )
    return [app.name for app in found]


def test_the_rules_decide_for_the_person_and_their_groups():
    assert names("alice", ["ops"]) == ["Ops", "wiki"]
    assert names("bob", []) == ["wiki"]


def test_a_path_spelled_another_way_is_still_denied():
    assert "Encoded admin" not in names("alice", ["ops"])


def test_without_rules_every_entry_is_listed():
    assert names("bob", [], access=None) == ["Admin", "Encoded admin", "Ops", "Outside", "wiki"]


def test_the_host_is_what_the_link_shows():
    app = applications.Application("Wiki", "https://wiki.example.test:8443/x?y=1", "gateway")
    assert app.host == "wiki.example.test:8443"
