"""Email addresses: every one is checked before it is stored or used (SC-37).

email-validator parses the address as RFC 5322 and 6531 say; we then keep its ASCII
form (an internationalised domain in punycode, no SMTPUTF8 local part), so an address
can never carry a line break, a second recipient or a display name into a header.

Intranet names are accepted, since a self-hosted mail server delivers them: `.internal`
and `.lan` as any name, `.test` (email-validator's `test_environment`), and `.local`
(RFC 6762) and `.home.arpa` (RFC 8375), which email-validator refuses as special-use
whatever its options: those are checked as the same name under `.internal`, so every
syntax rule still applies, and keep their own suffix. `.localhost`, `.invalid`,
`.onion`, the rest of `.arpa`, a name without a dot and an IP address stay refused."""

from __future__ import annotations

import email_validator

MAX_LENGTH = 254  # RFC 5321's limit on a path, and the column's
STAND_IN = "internal"  # a private name email-validator accepts, for those it refuses
NO_DOT = "The part after the @-sign is not valid. It should have a period."


class BadAddress(ValueError):
    """Not an address we can send to; the message says why, in plain words."""


def normalise(address: str | None) -> str:
    """The address, checked and in its normal ASCII form, or BadAddress."""
    text = (address or "").strip()
    if not text or len(text) > MAX_LENGTH or any(c in text for c in "\r\n\0"):
        raise BadAddress("Enter one email address, such as name@example.com.")
    checked_text, suffix = _stand_in(text)
    try:
        checked = email_validator.validate_email(
            checked_text,
            check_deliverability=False,
            test_environment=True,  # accepts `.test`; nothing else changes with DNS off
            allow_smtputf8=False,
            allow_display_name=False,
        )
    except email_validator.EmailNotValidError as exc:
        raise BadAddress(str(exc)) from None
    normal = checked.ascii_email or checked.normalized
    if suffix:
        normal = normal.removesuffix("." + STAND_IN) + "." + suffix
    if "." not in normal.rpartition("@")[2]:  # `test_environment` lets `x@test` through
        raise BadAddress(NO_DOT)
    if len(normal) > MAX_LENGTH:
        raise BadAddress("Enter one email address, such as name@example.com.")
    return normal


def _stand_in(text: str) -> tuple[str, str | None]:
    """`text` with the last label of a refused private name (`x.local`, `home.arpa`,
    `x.home.arpa`) replaced by `internal`, and that label (None: `text` as it is)."""
    local, at, domain = text.rpartition("@")
    lowered = domain.lower()
    if at and (lowered == "home.arpa" or lowered.endswith((".home.arpa", ".local"))):
        head, _, last = domain.rpartition(".")
        return f"{local}@{head}.{STAND_IN}", last.lower()
    return text, None
