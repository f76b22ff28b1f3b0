"""What an authorization request asks of the sign-in behind it: `prompt` (`none`: never
a page; `login`: a new sign-in) and `max_age` (a sign-in older than that is done
again). Pure: the view applies it to the session."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError

# What a new sign-in fulfils: dropped from the request it comes back to, so that the
# fresh session is not sent to sign in again (max_age=0 would loop).
FULFILLED = ("prompt", "max_age")
MAX_AGE_LIMIT = 10 * 365 * 24 * 3600


class RequestNotSupported(OAuth2Error):
    error = "request_not_supported"


class RequestUriNotSupported(OAuth2Error):
    error = "request_uri_not_supported"


@dataclass(frozen=True)
class Asked:
    prompt_none: bool = False
    prompt_login: bool = False
    max_age: int | None = None

    def needs_new_sign_in(self, auth_time: dt.datetime, at: dt.datetime) -> bool:
        """`prompt=login`, or a sign-in older than `max_age` seconds."""
        if self.prompt_login:
            return True
        return self.max_age is not None and (at - auth_time).total_seconds() > self.max_age


def parse(args) -> Asked:
    """`prompt` and `max_age` as sent; `none` with another value, or a `max_age` that
        is not a whole number of seconds, is an invalid request (for the client); request
    objects are not supported."""
    if args.get("request"):
        raise RequestNotSupported("Request objects are not supported.")
    if args.get("request_uri"):
        raise RequestUriNotSupported("'request_uri' is not supported.")
    prompts = (args.get("prompt") or "").split()
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequestError("'prompt=none' cannot be combined with other values.")
    raw = args.get("max_age")
    max_age = None
    if raw not in (None, ""):
        if not raw.isdigit() or int(raw) > MAX_AGE_LIMIT:
            raise InvalidRequestError("'max_age' is a number of seconds.")
        max_age = int(raw)
    return Asked("none" in prompts, "login" in prompts, max_age)


def client_id_of(path: str) -> str | None:
    """The `client_id` of an authorization request's path (kept for a step-up)."""
    values = parse_qs(urlsplit(path).query).get("client_id")
    return values[0] if values else None
