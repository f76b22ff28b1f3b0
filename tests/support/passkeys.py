"""Passkeys in tests: a key registered through the portal's own ceremony (the service,
as the account page uses it) and the sign-in page's usernameless options."""

from __future__ import annotations

import html
import json
import re

from standalone_mfa.core.models import User
from standalone_mfa.factors import webauthn

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
