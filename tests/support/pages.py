"""Reading what the app answered: CSRF tokens, flashed messages, the page's text, where
a redirect leads, the cookie a response sets."""

from __future__ import annotations

import html
import re

from itsdangerous import URLSafeTimedSerializer

CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


SECRET_RE = re.compile(r'id="totp-secret"[^>]*>([^<]+)<')


def csrf_from(page: str) -> str:
    match = CSRF_RE.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


RECOVERY_CODE_RE = re.compile(r"<code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code>")


def location(response) -> str | None:
    return response.headers.get("Location")


MESSAGE_RE = re.compile(r'class="message message-[a-z]+"[^>]*>([^<]*)<')


CSRF_INPUT_RE = re.compile(r'<input\b[^>]*\bname="csrf_token"[^>]*>')


VALUE_RE = re.compile(r'\bvalue="([^"]*)"')


def messages(response) -> list[str]:
    """The messages a page shows (flashed or not), as a person reads them."""
    return [html.unescape(m.strip()) for m in MESSAGE_RE.findall(response.get_data(as_text=True))]


def form_token(response) -> str:
    field = CSRF_INPUT_RE.search(response.text)
    assert field, f"no CSRF field: {response.status_code}"
    return html.unescape(VALUE_RE.search(field.group(0)).group(1))


def signed_payload(value: str):
    """What a cookie signed by itsdangerous carries, whatever key signed it. Its payload
    is zlib-compressed (and the value begins with ".") whenever that is shorter."""
    return URLSafeTimedSerializer("any key").loads_unsafe(value)[1]


def set_cookie_value(response, name="smfa_session") -> str | None:
    """The value the response sets for cookie `name`, whatever its prefix (None: not set)."""
    # A test-client response, or a `requests` one (whose raw headers keep every one).
    headers = response.headers if hasattr(response.headers, "getlist") else response.raw.headers
    for header in headers.getlist("Set-Cookie"):
        key, value = header.split(";", 1)[0].split("=", 1)
        if key.removeprefix("__Host-").removeprefix("__Secure-") == name:
            return value
    return None


def text(page_or_response) -> str:
    """The page as a person reads it: entities such as &#39; decoded, white space
    (line breaks in the templates) collapsed."""
    if not isinstance(page_or_response, str):
        page_or_response = page_or_response.get_data(as_text=True)
    return re.sub(r"\s+", " ", html.unescape(page_or_response))


def goes_to_login(response) -> bool:
    return response.status_code == 302 and location(response).startswith("/login")


def admin_messages(browser) -> list[str]:
    """The messages flashed to `browser`, as the Administration page shows them."""
    return messages(browser.get("/admin/"))


def row_of(page, username):
    """The cells of one user's line in the Users table."""
    match = re.search(rf'<th scope="row">{re.escape(username)}</th>(.*?)</tr>', page, re.S)
    assert match, f"no row for {username}"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]
