"""SC-67: the Cookie header the check hands the app (nginx and Traefik copy it onto the
request in place of the browser's): the browser's cookies less every cookie of the
portal. Through real proxies: tests/e2e/test_gateway_apps.py."""

from __future__ import annotations

import pytest
from support.gateway import make_gateway_app

from standalone_mfa.core.db import db
from standalone_mfa.gateway.app_cookies import for_the_app

RULES = {
    "default_policy": "deny",
    "rules": [
        {"domain": ["public.example.test"], "policy": "bypass"},
        {"domain": ["*.example.test"], "policy": "one_factor"},
    ],
}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("theme=dark", "theme=dark"),
        ("smfa_session=t1", None),
        ("smfa_session=t1; theme=dark", "theme=dark"),
        ("theme=dark; __Secure-smfa_session=t1; lang=fr", "theme=dark; lang=fr"),
        # Every cookie of the portal, prefixed or not, in any case, and repeated.
        ("__Host-smfa_bind=b; smfa_anon=a; __secure-SMFA_SESSION=s; x=1; smfa_session=2", "x=1"),
        # Spaces around a name, as some clients write them.
        ("  smfa_session = t1 ;q=2", "q=2"),
        # Two Cookie lines joined with a comma by a WSGI server: the pair goes whole.
        ("a=1,smfa_session=t1; b=2", "b=2"),
        # Names that only look alike stay; so do commas inside an app's value.
        ("xsmfa_session=1; prefs=a,b", "xsmfa_session=1; prefs=a,b"),
        ("", None),
        (None, None),
    ],
)
def test_sc67_the_app_gets_the_browsers_cookies_less_the_portals(sent, kept):
    assert for_the_app(sent, "smfa_session") == kept


def test_sc67_a_renamed_session_cookie_is_stripped_too():
    sent = "sso=1; __Secure-sso=2; ssox=3; smfa_anon=4"
    assert for_the_app(sent, "sso") == "ssox=3"


@pytest.fixture
def gateway_app(tmp_path, clock):
    app = make_gateway_app(tmp_path, clock, rules=RULES)
    yield app
    with app.app_context():
        db.close()


def ask(app, url: str, cookie: str):
    client = app.test_client(use_cookies=False)
    headers = {"X-Original-URL": url, "X-Original-Method": "GET", "Cookie": cookie}
    return client.get("/auth/nginx", headers=headers)


def test_sc67_the_checks_200_carries_the_apps_cookie_header(gateway_app):
    sent = "__Secure-smfa_session=forged; theme=dark; smfa_anon=x"
    answer = ask(gateway_app, "https://public.example.test/", sent)
    assert answer.status_code == 200
    assert answer.headers.getlist("Cookie") == ["theme=dark"]
    # Nothing left: no header at all (nginx and Traefik then send the app none).
    answer = ask(gateway_app, "https://public.example.test/", "__Secure-smfa_session=x")
    assert answer.status_code == 200 and "Cookie" not in answer.headers


def test_sc67_a_refusal_or_a_redirect_carries_no_cookies(gateway_app):
    answer = ask(gateway_app, "https://wiki.example.test/", "theme=dark")
    assert answer.status_code == 401 and "Cookie" not in answer.headers
    answer = ask(gateway_app, "https://other.test/", "theme=dark")
    assert answer.status_code == 403 and "Cookie" not in answer.headers
