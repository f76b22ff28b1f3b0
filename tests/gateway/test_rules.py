"""The gateway's pure parts: the rule matcher and its validation (SC-34), the proxy's
headers (SC-32, SC-34), and `rd` (SC-33)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.app import START, make_app

from standalone_mfa.core.clock import FrozenClock
from standalone_mfa.core.config import ConfigurationError
from standalone_mfa.gateway import origin, rules
from standalone_mfa.signin.destinations import safe_destination, safe_return_url

RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": "public.example.com", "policy": "bypass"},
        {
            "domain": ["*.example.com"],
            "resources": ["^/admin(/|$)"],
            "policy": "two_factor",
            "subject": ["group:admins", "user:carol"],
        },
        {"domain": "*.example.com", "resources": ["^/admin(/|$)"], "policy": "deny"},
        {"domain": "wiki.example.com", "methods": ["POST", "PUT"], "policy": "two_factor"},
        {"domain": ["wiki.example.com", "app.example.com"], "policy": "one_factor"},
    ],
}


@pytest.fixture(scope="module")
def access():
    return rules.parse(RULES)


def test_domains_exact_and_wildcard(access):
    assert access.verdict("public.example.com", "/", "GET").policy == "bypass"
    assert access.verdict("PUBLIC.Example.COM", "/", "GET").policy == "bypass"
    assert access.verdict("wiki.example.com", "/page", "GET").policy == "one_factor"
    # "*.example.com" is below example.com only: not the apex, not a look-alike.
    assert access.verdict("example.com", "/admin", "GET").rule is None
    assert access.verdict("evilexample.com", "/admin", "GET").rule is None
    assert access.verdict("x.example.com.evil.org", "/admin", "GET").rule is None
    assert access.verdict("deep.sub.example.com", "/admin/", "GET").rule.number == 2


def test_resources_methods_and_first_match(access):
    assert access.verdict("wiki.example.com", "/page", "POST").policy == "two_factor"
    assert access.verdict("wiki.example.com", "/page", "PUT").policy == "two_factor"
    assert access.verdict("wiki.example.com", "/page", "DELETE").policy == "one_factor"
    # Resources are searched in the path and query; ^ anchors them.
    assert access.verdict("app.example.com", "/x/admin", "GET").policy == "one_factor"
    assert access.verdict("app.example.com", "/administrator", "GET").policy == "one_factor"


def test_subjects_users_groups_and_anonymous(access):
    # Nobody signed in meets a rule with a subject: sign in first, then it is decided.
    anonymous = access.verdict("app.example.com", "/admin/", "GET")
    assert anonymous.needs_identity and anonymous.rule.number == 2
    admins = access.verdict("app.example.com", "/admin/", "GET", "bob", frozenset({"admins"}))
    assert admins.policy == "two_factor" and not admins.needs_identity
    carol = access.verdict("app.example.com", "/admin/", "GET", "carol", frozenset())
    assert carol.rule.number == 2
    # Not a member: the next matching rule (deny) decides.
    staff = access.verdict("app.example.com", "/admin/", "GET", "alice", frozenset({"staff"}))
    assert staff.policy == "deny" and staff.rule.number == 3
    # A group named like a user (or the reverse) is not that user.
    assert (
        access.verdict("app.example.com", "/admin/", "GET", "admins", frozenset()).rule.number == 3
    )


def test_sc34_default_policy_decides_unmatched_requests():
    assert rules.parse({"rules": []}).verdict("a.example.com", "/", "GET").policy == "deny"
    assert rules.parse(None).verdict("a.example.com", "/", "GET").policy == "deny"
    chosen = rules.parse({"default_policy": "one_factor", "rules": []})
    assert chosen.verdict("a.example.com", "/", "GET").policy == "one_factor"


def test_rules_accept_a_json_string_as_from_the_environment():
    assert rules.parse(json.dumps(RULES)) == rules.parse(RULES)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"rules": [{"domain": "a.example.com", "policy": "allow"}]}, "rule 1: policy 'allow'"),
        ({"rules": [{"domain": "a.example.com"}]}, "rule 1: policy None"),
        ({"rules": [{"policy": "deny"}]}, "rule 1: domain is required"),
        (
            {
                "rules": [
                    {"domain": "a.example.com", "policy": "deny"},
                    {"domain": "b.example.com", "policy": "deny", "resource": ["^/"]},
                ]
            },
            "rule 2: unknown keys resource",
        ),
        (
            {"rules": [{"domain": "a.example.com", "resources": ["^/(admin"], "policy": "deny"}]},
            "rule 1: resource '^/(admin' is not a valid regular expression",
        ),
        ({"rules": [{"domain": "https://a.example.com", "policy": "deny"}]}, "rule 1: domain"),
        ({"rules": [{"domain": "*.com.", "policy": "deny"}]}, "rule 1: domain"),
        ({"rules": [{"domain": "*", "policy": "deny"}]}, "rule 1: domain"),
        (
            {"rules": [{"domain": "a.example.com", "methods": ["FE TCH"], "policy": "deny"}]},
            "rule 1: method 'FE TCH' is not an HTTP method token",
        ),
        (
            {"rules": [{"domain": "a.example.com", "subject": ["admins"], "policy": "deny"}]},
            "subject",
        ),
        (
            {"rules": [{"domain": "a.example.com", "subject": "user:x", "policy": "bypass"}]},
            "rule 1: a bypass rule cannot have a subject",
        ),
        ({"rules": [{"domain": [], "policy": "deny"}]}, "rule 1: domain must not be empty"),
        ({"rules": [{"domain": [1], "policy": "deny"}]}, "rule 1: domain must be"),
        ({"rules": ["deny"]}, "rule 1: must be an object"),
        ({"rules": {}}, "rules must be a list"),
        ({"default_policy": "allow"}, "default_policy 'allow'"),
        ({"defaultpolicy": "deny"}, "unknown keys: defaultpolicy"),
        ("{not json", "not valid JSON"),
        (["deny"], "must be an object"),
    ],
)
def test_sc34_invalid_rules_are_refused_naming_the_rule(value, named):
    with pytest.raises(rules.RulesError) as refused:
        rules.parse(value)
    assert named in str(refused.value)


def test_sc34_the_app_refuses_to_start_with_an_invalid_rule(tmp_path):
    broken = {"rules": [{"domain": "a.example.com", "resources": ["("], "policy": "deny"}]}
    with pytest.raises(ConfigurationError, match="rule 1"):
        make_app(
            tmp_path,
            FrozenClock(START),
            ACCESS_CONTROL=broken,
            GATEWAY_PORTAL_URL="https://auth.example.com",
        )


def test_rules_without_a_portal_url_or_a_bad_one_refuse_to_start(tmp_path):
    clock = FrozenClock(START)
    with pytest.raises(ConfigurationError, match="GATEWAY_PORTAL_URL"):
        make_app(tmp_path, clock, ACCESS_CONTROL=RULES)
    for bad in (
        "auth.example.com",
        "ftp://auth.example.com",
        "https://auth.example.com/?x=1",
        "https://user@auth.example.com",
    ):
        with pytest.raises(ConfigurationError, match="GATEWAY_PORTAL_URL"):
            make_app(tmp_path, clock, ACCESS_CONTROL=RULES, GATEWAY_PORTAL_URL=bad)


@pytest.mark.parametrize(
    "portal",
    ["https://example.org", "https://auth.example.org:8443/sso", "https://evilexample.com"],
)
def test_a_portal_outside_the_cookie_domain_refuses_to_start(tmp_path, portal):
    with pytest.raises(ConfigurationError) as refused:
        make_app(
            tmp_path,
            FrozenClock(START),
            GATEWAY_PORTAL_URL=portal,
            SESSION_COOKIE_DOMAIN="example.com",
        )
    said = str(refused.value)
    assert "GATEWAY_PORTAL_URL" in said and "SESSION_COOKIE_DOMAIN (example.com)" in said


@pytest.mark.parametrize(
    "portal", ["https://example.com", "https://auth.example.com:8443/sso", "http://A.Example.COM"]
)
def test_a_portal_on_or_under_the_cookie_domain_starts(tmp_path, portal):
    app = make_app(
        tmp_path,
        FrozenClock(START),
        GATEWAY_PORTAL_URL=portal,
        SESSION_COOKIE_DOMAIN=".Example.com",
    )
    assert app.config["GATEWAY_PORTAL_URL"] == portal


# --- The proxy's headers


def nginx(url, method="GET"):
    return origin.from_nginx({"X-Original-URL": url, "X-Original-Method": method})


def forwarded(proto="https", host="wiki.example.com", uri="/page", method="GET"):
    headers = {
        "X-Forwarded-Proto": proto,
        "X-Forwarded-Host": host,
        "X-Forwarded-Uri": uri,
        "X-Forwarded-Method": method,
    }
    return origin.from_forwarded({k: v for k, v in headers.items() if v is not None})


def test_nginx_headers_are_read():
    original = nginx("https://Wiki.Example.com:8443/a/page?x=1&y=2", "post")
    assert (original.scheme, original.host, original.path, original.query, original.method) == (
        "https",
        "wiki.example.com",
        "/a/page",
        "x=1&y=2",
        "post",  # as sent: methods are case-sensitive (judged upper-cased too, SC-48)
    )
    assert original.resource == "/a/page?x=1&y=2"
    assert original.asked == (("/a/page?x=1&y=2", "post"), ("/a/page?x=1&y=2", "POST"))
    assert original.url == "https://Wiki.Example.com:8443/a/page?x=1&y=2"
    assert origin.from_url("http://wiki.example.com").path == "/"


def test_forwarded_headers_are_read():
    original = forwarded(host="wiki.example.com:8443", uri="/p?q=1", method="DELETE")
    assert (original.scheme, original.host, original.path, original.query, original.method) == (
        "https",
        "wiki.example.com",
        "/p",
        "q=1",
        "DELETE",
    )
    assert original.url == "https://wiki.example.com:8443/p?q=1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Original-URL": "https://wiki.example.com/"},  # no method
        {"X-Original-Method": "GET"},  # no URL
        {"X-Original-URL": "/page", "X-Original-Method": "GET"},  # not absolute
        {"X-Original-URL": "ftp://wiki.example.com/", "X-Original-Method": "GET"},
        {"X-Original-URL": "javascript:alert(1)", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://alice@wiki.example.com/", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://wiki.example.com:99999x/", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://wiki example.com/", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://wiki.example.com/a b", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://wiki.example.com/\x00", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://wiki..example.com/", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://[::1]/", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://wiki.example.com/%zz", "X-Original-Method": "GET"},
        {"X-Original-URL": "https://wiki.example.com/", "X-Original-Method": "BR EW"},
        {"X-Original-URL": "https://wiki.example.com/" + "a" * 9000, "X-Original-Method": "GET"},
    ],
)
def test_sc34_malformed_or_missing_nginx_headers_are_refused(headers):
    with pytest.raises(origin.BadOrigin):
        origin.from_nginx(headers)


@pytest.mark.parametrize(
    "changes",
    [
        {"proto": None},
        {"host": None},
        {"uri": None},
        {"method": None},
        {"proto": "ftp"},
        {"host": "wiki.example.com, evil.org"},
        {"host": "a@wiki.example.com"},
        {"host": "wiki.example.com:x"},
        {"uri": "page"},
        {"uri": "//evil.org/"},
        {"uri": "/a b"},
        {"method": "BR EW"},
    ],
)
def test_sc34_malformed_or_missing_forwarded_headers_are_refused(changes):
    with pytest.raises(origin.BadOrigin):
        forwarded(**changes)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("/%41dmin", "/Admin"),
        ("//admin", "/admin"),
        ("/admin/", "/admin/"),
        ("/admin%2Fx", "/admin%2Fx"),  # an escaped slash is kept in the rules' spelling
        ("/alice%40example.com/", "/alice@example.com/"),
        ("/", "/"),
    ],
)
def test_sc34_paths_are_normalised_so_a_rule_cannot_be_walked_around(raw, path):
    assert origin.path_spellings(raw)[0] == path


def test_sc34_a_respelled_path_meets_the_rule_it_spells(access):
    for spelling in ("/%61dmin/", "//admin/", "/admin%2Fx", "/admin;x/"):
        original = nginx("https://app.example.com" + spelling)
        verdicts = [
            access.verdict(original.host, resource, method, "alice", frozenset()).policy
            for resource, method in original.asked
        ]
        assert "deny" in verdicts, spelling


# --- SC-33: rd


@pytest.mark.parametrize(
    "target",
    [
        "https://example.com/",
        "https://wiki.example.com/page?x=1#top",
        "http://wiki.example.com:8080/",
        "HTTPS://WIKI.EXAMPLE.COM/",
        "https://a.b.example.com",
    ],
)
def test_sc33_rd_on_the_cookie_domain_or_below_is_followed(target):
    assert safe_return_url(target, "example.com") == target
    assert safe_return_url(target, ".example.com") == target


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.org/",
        "https://example.com.evil.org/",
        "https://evilexample.com/",
        "https://wiki.example.com.evil.org/",
        "https://example.com@evil.org/",
        "https://wiki.example.com:pass@evil.org/",
        "https://evil.org#@wiki.example.com",
        "https://evil.org?.example.com",
        "https://evil.org\\.example.com/",
        "https://example.com\\@evil.org/",
        "https:/\\evil.org",
        "https:wiki.example.com",
        "//wiki.example.com/",
        "///evil.org",
        "javascript://wiki.example.com/%0aalert(1)",
        "data:text/html,hi",
        "ftp://wiki.example.com/",
        "https://evil.org%2F.example.com/",
        "https://evil.org%2f@wiki.example.com",
        "https://wiki.example.com./",
        "https://[::1]/",
        "https://wiki.example.com:0/",
        "https://wiki.example.com:99999/",
        "https://wiki.example.com/\x00",
        "https://wiki.example.com/ a",
        " https://wiki.example.com/",
        "https://wiki.example.com/\n",
        "https://" + "a" * 2100 + ".example.com/",
        "",
        None,
    ],
)
def test_sc33_rd_anywhere_else_is_ignored(target):
    assert safe_return_url(target, "example.com") is None
    assert safe_destination(target, "example.com") is None


def test_sc33_without_a_cookie_domain_no_url_is_followed_only_paths():
    assert safe_return_url("https://wiki.example.com/", None) is None
    assert safe_destination("https://wiki.example.com/", None) is None
    assert safe_destination("/account/security", None) == "/account/security"


# --- Whatever a proxy (or someone reaching the portal directly) sends


HEADER_TEXT = st.text(alphabet=st.characters(codec="latin-1"), max_size=120) | st.sampled_from(
    ["https://wiki.example.com/", "http://a.example.com:8080/x?y=1", "/", "//x"]
)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None)
@given(url=HEADER_TEXT, method=HEADER_TEXT, proto=HEADER_TEXT, host=HEADER_TEXT, uri=HEADER_TEXT)
def test_sc34_any_header_text_is_read_or_refused_never_an_error(url, method, proto, host, uri):
    access = rules.parse(RULES)
    for read, headers in (
        (origin.from_nginx, {"X-Original-URL": url, "X-Original-Method": method}),
        (
            origin.from_forwarded,
            {
                "X-Forwarded-Proto": proto,
                "X-Forwarded-Host": host,
                "X-Forwarded-Uri": uri,
                "X-Forwarded-Method": method,
            },
        ),
    ):
        try:
            original = read(headers)
        except origin.BadOrigin:
            continue
        assert original.scheme in ("http", "https")
        assert rules.is_method(original.method)
        for path in original.paths:
            assert path.startswith("/") and "//" not in path
            assert "/../" not in path + "/" and "/./" not in path + "/"
        for resource, method in original.asked:
            access.verdict(original.host, resource, method)
