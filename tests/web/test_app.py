"""The app class (`standalone_mfa.StandaloneMfa`): Flask, with each hook's and view's
`ensure_sync` worked out once per process instead of at every request."""

from __future__ import annotations


def test_a_plain_function_is_itself_and_an_async_one_still_runs(app):
    def hook():
        return "sync"

    async def view():
        return "async"

    assert app.ensure_sync(hook) is hook
    assert app.ensure_sync(hook) is hook  # the second answer is the remembered one
    wrapped = app.ensure_sync(view)
    assert wrapped is not view
    assert wrapped() == "async"
    assert app.ensure_sync(view)() == "async"


def test_every_page_answers_with_the_hooks_as_before(browser):
    """The hooks still run: the guard sends an anonymous browser to sign in, and the
    security headers are on the answer."""
    response = browser.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Cookie" in response.headers["Vary"]
