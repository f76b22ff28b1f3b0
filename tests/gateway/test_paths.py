"""What the check judges (docs/gateway/paths-and-methods.md): a malformed original URL
is refused (SC-65); a path an app could read another way is refused or judged in
every spelling, the strictest verdict kept (SC-66); every method token is judged by
the rules (SC-48); and anonymous denials cannot grow the audit log without bound
(SC-69). The test client plays the proxy, as in gateway/test_check.py."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from support.db import audit_rows
from support.gateway import (
    PortalBrowser,
    ask_forward,
    ask_nginx,
    cookie_header,
    make_gateway_app,
    portal_rd,
)

from standalone_mfa.core.audit import AuditCap
from standalone_mfa.core.db import db
from standalone_mfa.gateway import check, origin, rules

APP = "app.example.test"
RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": APP, "resources": ["^/admin(/|$)"], "policy": "deny"},
        {"domain": APP, "resources": ["^/public/"], "policy": "bypass"},
        {"domain": "public.example.test", "policy": "bypass"},
        {
            "domain": "dav.example.test",
            "resources": ["^/alice@example\\.test/"],
            "subject": "user:alice",
            "policy": "one_factor",
        },
        {"domain": "dav.example.test", "resources": ["^/alice@example\\.test/"], "policy": "deny"},
        {"domain": "dav.example.test", "methods": ["DELETE", "MOVE"], "policy": "deny"},
        {"domain": "dav.example.test", "methods": ["brew"], "policy": "deny"},
        {"domain": "*.example.test", "resources": ["^/private/"], "policy": "deny"},
        {"domain": ["*.example.test"], "policy": "one_factor"},
    ],
}


@pytest.fixture
def paths_app(tmp_path, clock):
    # The rate caps are the app's own: another test's rows cannot hide this one's.
    app = make_gateway_app(tmp_path, clock, rules=RULES)
    yield app
    with app.app_context():
        db.close()


@pytest.fixture
def token(paths_app, clock):
    def signed_in(username="alice"):
        browser = PortalBrowser(paths_app, clock)
        browser.login(username)
        return browser.session_token()

    return signed_in


def ask_forwarded(app, proto, host, uri, token=None, method="GET"):
    """A forward-auth check with the headers exactly as given."""
    sent = {
        "X-Forwarded-Proto": proto,
        "X-Forwarded-Host": host,
        "X-Forwarded-Uri": uri,
        "X-Forwarded-Method": method,
    }
    cookies = cookie_header(f"{proto}://{APP}/", token)
    return app.test_client(use_cookies=False).get("/auth/forward", headers={**sent, **cookies})


def both(app, url, token=None, method="GET"):
    """The status nginx's check and the forward-auth check give `url`."""
    return (
        ask_nginx(app, url, token, method).status_code,
        ask_forward(app, url, token, method).status_code,
    )


# --- SC-65: the original URL

MALFORMED_NGINX_URLS = [
    f"https://{APP}:443#/admin/users",  # Host: app:443# (the outside test's finding)
    f"https://{APP}#/admin/users",
    f"https://{APP}:443?/admin/users",  # Host ending in ?: an empty path before the query
    f"https://{APP}?/admin/users",
    f"https://{APP}/page#top",  # a fragment: no browser sends one
    f"https://{APP}/#",
    f"https://alice@{APP}/",
    f"https://alice:pw@{APP}/",
    f"https://{APP}:0/",
    f"https://{APP}:65536/",
    f"https://{APP}:/",
    f"https://{APP}:443:443/",
    f"https://{APP} /",
    f"https://{APP}%20/",
    f"https://{APP}\\@evil.example/",
    f"https://{APP}",  # no path: nginx's $request_uri always has one
    f"https:{APP}/",
    f"https:///{APP}/",
]


@pytest.mark.parametrize("url", MALFORMED_NGINX_URLS)
def test_sc65_a_malformed_x_original_url_is_refused(url):
    with pytest.raises(origin.BadOrigin):
        origin.from_nginx({"X-Original-URL": url, "X-Original-Method": "GET"})


@pytest.mark.parametrize(
    ("host", "uri"),
    [
        (f"{APP}#", "/admin/users"),
        (f"{APP}:443#", "/admin/users"),
        (f"{APP}?", "/admin/users"),
        (f"{APP}:443?x", "/"),
        (f"alice@{APP}", "/"),
        (f"{APP}:0", "/"),
        (f"{APP}:99999", "/"),
        (f"{APP}:", "/"),
        (f"{APP}/x", "/"),
        (f" {APP}", "/"),
        (APP, "https://secret.example.test/topsecret"),  # absolute form
        (APP, "http://secret.example.test/"),
        (APP, "*"),
        (APP, "page"),
        (APP, "?/admin/users"),  # an empty path before the query
        (APP, "/page#top"),
        (APP, "/page?x=1#top"),
        (APP, ""),
    ],
)
def test_sc65_malformed_forwarded_headers_are_refused(host, uri):
    with pytest.raises(origin.BadOrigin):
        origin.from_forwarded(
            {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": host,
                "X-Forwarded-Uri": uri,
                "X-Forwarded-Method": "GET",
            }
        )


def test_sc65_well_formed_urls_still_read_with_their_host_and_port():
    original = origin.from_nginx(
        {"X-Original-URL": f"https://{APP}:8443/a/b?x=1&y=%2F", "X-Original-Method": "GET"}
    )
    assert (original.host, original.path, original.query) == (APP, "/a/b", "x=1&y=%2F")
    original = origin.from_forwarded(
        {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": f"{APP}:65535",
            "X-Forwarded-Uri": "/a?b",
            "X-Forwarded-Method": "GET",
        }
    )
    assert (original.host, original.path, original.query) == (APP, "/a", "b")


def test_sc65_malformed_checks_get_403_never_a_pass_and_one_audit_row_a_minute(paths_app, token):
    alice = token()
    for _ in range(30):
        for url in (f"https://{APP}:443#/admin/users", "https://public.example.test?/admin"):
            for who in (None, alice):
                assert ask_nginx(paths_app, url, who).status_code == 403
        for host, uri in ((f"{APP}:443#", "/admin/users"), (APP, "https://public.example.test/")):
            assert ask_forwarded(paths_app, "https", host, uri, alice).status_code == 403
    rows = audit_rows(paths_app, "gateway_refused")
    assert len(rows) == 1
    event, outcome, username, _, detail = rows[0]
    assert (outcome, username) == ("malformed", None)
    assert "/admin" not in detail  # what was wrong, never the client's text


# --- SC-66: spellings of a path

DENIED_SPELLINGS = [
    "/admin/users",
    "/admin%2Fusers",
    "/admin%2fusers",
    "/%2Fadmin/users",
    "/admin%5Cusers",
    "/admin\\users",
    "/\\admin/users",
    "/admin;x/users",
    "/admin;jsessionid=1",
    "/admin%3Bx/users",
    "/admin%252Fusers",  # decoded twice by the app
    "/%2561dmin/users",
    "/%61dmin/users",
    "//admin/users",
    "/admin//users",
]

REFUSED_SPELLINGS = [
    "/admin/../users",
    "/admin/%2e%2e/users",
    "/admin/%2E%2E/users",
    "/admin/.%2e/users",
    "/users/../admin/users",
    "/x/..;/admin/users",
    "/x/..%3B/admin/users",
    "/public/..%2Fadmin/users",
    "/public/..%5Cadmin/users",
    "/public\\..\\admin\\users",
    "/public/%252e%252e/admin/users",
    "/./admin/users",
    "/admin/.",
    "/a%00",
    "/a%2500",
    "/a%0d%0aX:%20y",
    "/a%7F",
    "/admin%25252Fusers",  # encoded three times
    "/a%zz",
    "/a%2",
]


@pytest.mark.parametrize("path", DENIED_SPELLINGS)
def test_sc66_every_spelling_of_a_denied_path_is_denied(paths_app, token, path):
    alice = token()
    assert both(paths_app, f"https://{APP}{path}", alice) == (403, 403)
    assert both(paths_app, f"https://{APP}{path}") == (403, 403)


@pytest.mark.parametrize("path", REFUSED_SPELLINGS)
def test_sc66_dot_segments_nul_and_deep_encodings_are_refused(paths_app, token, path):
    alice = token()
    assert both(paths_app, f"https://{APP}{path}", alice) == (403, 403)
    with pytest.raises(origin.BadOrigin):
        origin.from_url(f"https://{APP}{path}")


@pytest.mark.parametrize(
    "path",
    [
        "/files/My%20Documents/caf%C3%A9.txt",  # WebDAV: spaces and UTF-8
        "/files/100%25.txt",  # a name with a percent sign
        "/files/a;b.txt",  # a name with a semicolon
        "/files/a%3Bb.txt",
        "/api/queues/%2F/tasks",  # RabbitMQ's default vhost
        "/npm/@scope%2fname",
        "/%7Ealice/",
        "/.well-known/caldav",
        "/files/.hidden/..data",
        "/files//x",
        "/admins",  # not ^/admin(/|$)
        "/administrator",
    ],
)
def test_sc66_real_apps_paths_still_pass(paths_app, token, path):
    assert both(paths_app, f"https://{APP}{path}", token()) == (200, 200)


def test_sc66_an_allow_rule_cannot_be_stretched_by_a_spelling(paths_app):
    # ^/public/ is bypass; a spelling that leaves it on the app's side is judged too.
    assert both(paths_app, f"https://{APP}/public/a%20b") == (200, 200)
    assert both(paths_app, f"https://{APP}/public/a;x") == (200, 200)
    for path in ("/public%2F../admin", "/public;/../admin/users", "/public%2F..%2Fadmin"):
        assert both(paths_app, f"https://{APP}{path}") == (403, 403), path
    # Not under /public/ in one spelling: sign in, as for any other page.
    assert ask_nginx(paths_app, f"https://{APP}/public%2Fx").status_code == 401


def test_sc66_rules_see_decoded_characters_so_a_caldav_principal_matches(paths_app, token):
    """CalDAV principals are e-mail addresses, sent as `@` or `%40`: either way alice's
    rule matches, and bob's request for her calendar is refused."""
    alice, bob = token("alice"), token("bob")
    for spelling in ("alice@example.test", "alice%40example.test", "alice%40example%2Etest"):
        url = f"https://dav.example.test/{spelling}/calendar/"
        assert both(paths_app, url, alice, "PROPFIND") == (200, 200), spelling
        assert both(paths_app, url, bob, "PROPFIND") == (403, 403), spelling


def test_sc66_the_admin_box_reads_a_url_as_the_check_does(paths_app):
    explained = check.explain(
        rules.parse(RULES), origin.from_url(f"https://{APP}/admin%2Fusers"), None
    )
    assert explained.anonymous.outcome == check.REFUSE
    assert explained.anonymous.rule.number == 1


# --- SC-48: methods

WEBDAV = ["PROPFIND", "PROPPATCH", "MKCOL", "MKCALENDAR", "REPORT", "COPY", "LOCK", "UNLOCK"]


@pytest.mark.parametrize("method", [*WEBDAV, "GET", "PUT", "SEARCH", "BREW", "X-MS-ENUM", "M.1"])
def test_sc48_every_method_token_is_judged_by_the_rules(paths_app, token, method):
    url = "https://dav.example.test/bob/calendar/"
    assert both(paths_app, url, token("bob"), method) == (200, 200)
    anonymous = ask_nginx(paths_app, url, None, method)
    assert anonymous.status_code == 401 and portal_rd(anonymous) == url


@pytest.mark.parametrize("method", ["MOVE", "DELETE", "move", "Delete", "brew"])
def test_sc48_a_rules_methods_match_exactly_and_an_upper_cased_spelling_too(
    paths_app, token, method
):
    """`methods` match exactly; a request in lower case is judged as sent and as an app
    that upper-cases methods (Werkzeug, Django) reads it, the strictest kept."""
    url = "https://dav.example.test/bob/calendar/"
    assert both(paths_app, url, token("bob"), method) == (403, 403)


def test_sc48_a_custom_method_in_a_rule_matches_only_its_own_spelling(paths_app, token):
    url = "https://dav.example.test/bob/"
    assert both(paths_app, url, token("bob"), "BREW") == (200, 200)  # "brew" is not BREW


@pytest.mark.parametrize(
    "method", ["", "GE T", "GET\t", "(GET)", "G/ET", "GET,POST", "G\u00e9T", '"GET"', "X" * 65]
)
def test_sc48_a_malformed_method_is_refused(paths_app, token, method):
    url = "https://dav.example.test/bob/"
    with pytest.raises(origin.BadOrigin):
        origin.from_nginx({"X-Original-URL": url, "X-Original-Method": method})
    if method.isascii() and "\t" not in method:
        assert both(paths_app, url, token("bob"), method) == (403, 403)


def test_sc48_rules_may_name_any_method_token_and_refuse_anything_else():
    access = rules.parse(
        {"rules": [{"domain": "dav.example.test", "methods": WEBDAV, "policy": "one_factor"}]}
    )
    assert access.verdict("dav.example.test", "/", "PROPFIND").policy == "one_factor"
    assert access.verdict("dav.example.test", "/", "propfind").rule is None  # exact
    assert access.verdict("dav.example.test", "/", "GET").policy == "deny"
    for custom in ("BREW", "X-CUSTOM", "brew", "M.1"):
        parsed = rules.parse(
            {"rules": [{"domain": "a.test", "methods": custom, "policy": "deny"}]}
        )
        assert parsed.rules[0].methods == frozenset({custom})
    for bad in ("GET POST", "(GET)", "G/ET", "GET,POST", "G\u00e9T", "X" * 65):
        with pytest.raises(rules.RulesError, match="rule 1: method"):
            rules.parse({"rules": [{"domain": "a.test", "methods": [bad], "policy": "deny"}]})
    # A registered method in another case would never match what the admin meant.
    for typo in ("get", "Propfind", "mkcalendar"):
        with pytest.raises(rules.RulesError, match=typo.upper()):
            rules.parse({"rules": [{"domain": "a.test", "methods": [typo], "policy": "deny"}]})


# --- SC-69: anonymous checks for invented hosts


def checks_counted(decision):
    return REGISTRY.get_sample_value("smfa_gateway_checks_total", {"decision": decision}) or 0


def test_sc69_invented_hosts_do_not_grow_the_audit_log(paths_app, token):
    denied_before = checks_counted("deny")
    for n in range(100):
        assert ask_nginx(paths_app, f"https://h{n}.invented.test/").status_code == 403
        assert ask_forward(paths_app, f"https://x{n}.example.test/private/a").status_code == 403
    assert checks_counted("deny") - denied_before == 200  # every one counted
    rows = audit_rows(paths_app, "gateway_denied")
    # One row for the default policy, one for the deny rule: both visible, once a minute.
    assert len(rows) == 2
    assert {row[2] for row in rows} == {None}
    assert any("h0.invented.test" in row[4] and "default policy" in row[4] for row in rows)
    assert any("x0.example.test/private/a" in row[4] and "rule 8" in row[4] for row in rows)

    # A signed-in person's denials are still seen, apart from the anonymous ones.
    bob = token("bob")
    for n in range(20):
        assert ask_nginx(paths_app, f"https://h{n}.invented.test/", bob).status_code == 403
    rows = audit_rows(paths_app, "gateway_denied")
    assert len(rows) == 3 and rows[-1][2] == "bob"


def test_sc69_the_cap_lets_a_denial_through_again_after_a_minute():
    cap = AuditCap(interval=60.0)
    assert cap.due(("anyone", 1), moment=1000.0)
    assert not cap.due(("anyone", 1), moment=1059.0)
    assert cap.due(("someone", 1), moment=1059.0)
    assert cap.due(("anyone", 1), moment=1060.5)
    small = AuditCap(size=3)
    for n in range(10):
        assert small.due(n, moment=0.0)
    assert len(small._last) <= 3


def test_sc48_the_admin_box_tests_a_webdav_method(paths_app, clock):
    admin = PortalBrowser(paths_app, clock)
    admin.login("root")
    page = admin.page(
        "/admin/access?url=https%3A%2F%2Fdav.example.test%2Fbob%2F&method=MOVE&username=bob"
    )
    assert '<option selected value="MOVE">' in page or 'value="MOVE" selected' in page
    assert "rule 6" in page
