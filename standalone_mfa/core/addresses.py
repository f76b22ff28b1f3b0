"""Email addresses: every one is checked before it is stored or used (SC-37).

email-validator parses the address as RFC 5322 and 6531 say; we then keep its ASCII
form (an internationalised domain in punycode, no SMTPUTF8 local part), so an address
can never carry a line break, a second recipient or a display name into a header."""

from __future__ import annotations

import email_validator

MAX_LENGTH = 254  # RFC 5321's limit on a path, and the column's


class BadAddress(ValueError):
    """Not an address we can send to; the message says why, in plain words."""


def normalise(address: str | None) -> str:
    """The address, checked and in its normal ASCII form, or BadAddress."""
    text = (address or "").strip()
    if not text or len(text) > MAX_LENGTH or any(c in text for c in "\r\n\0"):
        raise BadAddress("Enter one email address, such as name@example.com.")
    try:
        checked = email_validator.validate_email(
            text, check_deliverability=False, allow_smtputf8=False, allow_display_name=False
        )
    except email_validator.EmailNotValidError as exc:
        raise BadAddress(str(exc)) from None
    normal = checked.ascii_email or checked.normalized
    if len(normal) > MAX_LENGTH:
        raise BadAddress("Enter one email address, such as name@example.com.")
    return normal
