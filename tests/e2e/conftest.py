"""The end-to-end tests' fixtures. Every test in this folder starts real servers
(gunicorn, nginx, Caddy, Traefik, SMTP, real apps) or builds and installs the wheel: the
whole folder is marked `server`, and left out of `make check`.

The browser fixtures (the library is support/browser.py): `site` is the portal under
gunicorn, or the gateway's with `SITE = "gateway"` in the module (a module may also
define its own, as the one that mails does), `chromium`
one headless Chromium per module on that site, `open_window` a `Person` per window,
`javascript` runs a flow with JavaScript on and off, `axe_source` axe-core's script."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from support.browser import ACTION_TIMEOUT_MS, AXE_JS, CHROMIUM, DOMAIN, Person, Site, gateway_site

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="module")
def site(request, tmp_path_factory):
    """The module's site: the portal under gunicorn (`Site`), or with `SITE = "gateway"`
    in the module the gateway site, (app, nginx's HTTPS port): see support/browser.py."""
    if getattr(request.module, "SITE", "portal") == "gateway":
        yield from gateway_site(tmp_path_factory)
        return
    site = Site(tmp_path_factory.mktemp("browser-site"))
    site.set_mfa_method("totp")
    try:
        site.start()
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="module")
def chromium(site):
    """One headless Chromium for the module (closed before the server stops)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # The gateway's names (app1.example.test, …) lead to 127.0.0.1.
            args=[f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1"],
        )
        yield browser
        browser.close()


@pytest.fixture
def open_window(site, chromium):
    """open_window(**context options) -> a Person in a new browser context."""
    contexts = []

    def open_(**options) -> Person:
        context = chromium.new_context(base_url=site.url, **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        return Person(site, context.new_page())

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def javascript(request) -> bool:
    """The flows run twice: as most people use the site, and with JavaScript off."""
    return request.param


@pytest.fixture
def totp_on(site):
    if site.mfa_method() != "totp":
        site.set_mfa_method("totp")


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: `make test` runs npm ci in tests/browser")
    return AXE_JS.read_text()


@pytest.fixture
def axe_window(site, chromium):
    """A Person in a window that may inject axe (its context bypasses the site's CSP,
    which rightly forbids inline scripts; the flows run with it)."""
    context = chromium.new_context(base_url=site.url, bypass_csp=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    yield Person(site, context.new_page())
    context.close()
