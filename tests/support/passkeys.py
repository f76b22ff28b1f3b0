"""Passkeys in tests: a key registered through the portal's own ceremony (the service,
as the account page uses it), the sign-in page's usernameless options, and for the
pages: `add_key` as a person does it, `options_on` a page's options block."""

from __future__ import annotations

import html
import json
import re

from standalone_mfa.core.models import User
from standalone_mfa.factors import webauthn
from support.app import PASSWORD
from support.pages import location

OPTIONS_RE = re.compile(
    r'<script type="application/json" id="webauthn-options-signin">(.*?)</script>'
)


def register(app, clock, username, key, kind=webauthn.PASSKEY, name="Laptop"):
    """`username` registers `key` (a support.softkey.SoftKey); returns it."""
    with app.test_request_context():
        user = User.get(User.username == username)
        options = webauthn.registration_options(user, kind, binding="x" * 43, at=clock.now())
        outcome = webauthn.verify_registration(
            user, key.create(options), kind=kind, name=name, binding="x" * 43, at=clock.now()
        )
    assert outcome.ok, outcome.problem
    return key


def options_in(page: str) -> dict:
    """The sign-in page's passkey options (its JSON block)."""
    match = OPTIONS_RE.search(page)
    assert match, "no passkey options on the sign-in page"
    return json.loads(html.unescape(match.group(1)))


ORIGIN = "http://localhost:5000"  # WEBAUTHN_ORIGINS' default


def options_on(page: str, options_id: str) -> dict:
    match = re.search(
        rf'<script type="application/json" id="{options_id}">(.*?)</script>', page, re.S
    )
    assert match, f"no {options_id} on the page"
    return json.loads(match.group(1))


def add_key(
    browser, key, *, name="Laptop", kind="passkey", password=PASSWORD, code=None, proof_key=None
):
    """Add a key from Account security as a person would: prove (the password, and a
    code or, for a person whose second factor is keys, `proof_key`), name, create."""
    page = browser.page("/account/passkeys/new")
    if "passkey-create" not in page:
        proof = {"password": password, **({"code": code} if code else {})}
        if proof_key is not None:
            proof["credential"] = proof_key.get(options_on(page, "webauthn-options-reauth"))
        response = browser.post("/account/passkeys/new", proof)
        assert location(response) == "/account/passkeys/new", response.get_data(as_text=True)
        page = browser.page("/account/passkeys/new")
    options = options_on(page, f"webauthn-options-{kind}")
    return browser.post(
        "/account/passkeys/new", {"name": name, "kind": kind, "credential": key.create(options)}
    )
