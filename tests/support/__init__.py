"""The tests' plain helpers, one name each, by theme (fixtures live in the conftest.py
files): `app` (the app under test), `client` (the test-client browser, HTTP clients),
`pages` (reading answers), `steps` (sign-in and account steps), `db` (the database read
and written directly), `oath` (codes), `paths` (the repository's folders), `servers`
(gunicorn, a quiet werkzeug server), `proxies` (nginx, Caddy, Traefik and the gateway),
`real_apps`, `smtp`, `browser` (Chromium through Playwright), `softkey` (a software
WebAuthn authenticator) and `passkeys` (keys registered, the sign-in page's options)."""

import os as _os

from .workers import own_database as _own_database

# Run in several processes (pytest-xdist, `make test`'s passes), each process gets a
# PostgreSQL database of its own, before any helper reads TEST_DATABASE_URL: the tests
# wipe and fill their database's tables, and two processes sharing one would see each
# other's rows.
if _os.environ.get("PYTEST_XDIST_WORKER") and _os.environ.get("TEST_DATABASE_URL"):
    _os.environ["TEST_DATABASE_URL"] = _own_database(
        _os.environ["TEST_DATABASE_URL"], _os.environ["PYTEST_XDIST_WORKER"]
    )
