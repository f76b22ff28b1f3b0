"""The tests' plain helpers, one name each, by theme (fixtures live in the conftest.py
files): `app` (the app under test), `client` (the test-client browser, HTTP clients),
`pages` (reading answers), `steps` (sign-in and account steps), `db` (the database read
and written directly), `oath` (codes), `paths` (the repository's folders), `servers`
(gunicorn, a quiet werkzeug server), `proxies` (nginx, Caddy, Traefik and the gateway),
`real_apps`, `smtp`, `browser` (Chromium through Playwright)."""
