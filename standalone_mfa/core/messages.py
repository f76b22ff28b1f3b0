"""What people read when a step does not go through: one table, read through one strict
accessor, so that every page says the same thing the same way (and a translation has
one place to go). A message never names a secret, a code or a password."""

from __future__ import annotations

import ast

from flask_babel import get_translations

MESSAGES = {
    # Passwords. At sign-in the answer never says whether the username exists.
    "wrong_password_or_username": "The username or password is not right.",
    "wrong_password": "That password is not right.",
    "password_wait": (
        "Too many failed sign-ins for this username. Wait {count} second, then try again.",
        "Too many failed sign-ins for this username. Wait {count} seconds, then try again.",
    ),
    # Codes. One message for a wrong, malformed or already used code: which it was is
    # not said.
    "wrong_code": (
        "That code is not right, or it was already used. "
        "Wait for the next code in your authenticator app and try again."
    ),
    "wrong_recovery_code": (
        "That recovery code is not right, or it was already used. "
        "Check it and try again, or use another one."
    ),
    "code_wait": (
        "Too many wrong codes. Wait {count} second, then try again.",
        "Too many wrong codes. Wait {count} seconds, then try again.",
    ),
    "too_many_codes": "Too many wrong codes. Please sign in again.",
    "locked": (
        "Two-factor sign-in for this account is locked after too many wrong codes. "
        "Ask an administrator to unlock it."
    ),
    "drift_hint_ago": (
        "This code was valid about {count} minute ago. "
        "Your phone's clock may be wrong; turn on automatic time.",
        "This code was valid about {count} minutes ago. "
        "Your phone's clock may be wrong; turn on automatic time.",
    ),
    "drift_hint_ahead": (
        "This code was valid about {count} minute from now. "
        "Your phone's clock may be wrong; turn on automatic time.",
        "This code was valid about {count} minutes from now. "
        "Your phone's clock may be wrong; turn on automatic time.",
    ),
    "need_code": "Enter the current code from your authenticator app.",
    "need_code_or_recovery": (
        "Enter the current code from your authenticator app, or a recovery code."
    ),
    # The sign-in steps.
    "set_up": (
        "Your authenticator app is set up. You will need it each time you sign in. "
        "Save your recovery codes before you continue."
    ),
    "set_up_elsewhere": (
        "Your authenticator app was already set up in another window. "
        "Enter the code it shows for this account."
    ),
    "recovery_used": (
        "Recovery code accepted. You have {count} recovery code left.",
        "Recovery code accepted. You have {count} recovery codes left.",
    ),
    "recovery_low": " Generate new codes on your Account security page soon.",
    "expired": "Your sign-in expired. Please sign in again.",
    "mfa_required": (
        "Your administrator now requires Multi-Factor Authentication. "
        "Please sign in again to continue."
    ),
    # Proving it is you again while signed in (account changes, administrators' step-up).
    "reauth_confirmed": (
        "Thank you. You can make administrative changes for the next {minutes} minutes."
    ),
    "new_authenticator_expired": "Setting up the new app took too long. Start again.",
    # Pages: what a view says after an action. A (singular, plural) pair is read
    # through `counted`, which picks the form the page's language uses for the number.
    "signed_out": "You have signed out.",
    "qr_label": (
        "QR code to add {username} to your authenticator app. "
        "If you cannot scan it, type the secret key shown beside it."
    ),
    "qr_label_new": (
        "QR code to add {username} to your new authenticator app. "
        "If you cannot scan it, type the secret key shown beside it."
    ),
    "no_authenticator": "You have no authenticator app set up.",
    "check_the_form": "Check the form and try again.",
    "new_codes_made": "New recovery codes were made. The old ones no longer work.",
    "prove_first": "Start by confirming your password and a current code.",
    "new_authenticator_set_up": (
        "Your new authenticator app is set up; the old one no longer works. "
        "Other sessions and remembered devices were signed out."
    ),
    "password_changed": (
        "Your password was changed. {count} other session was signed out "
        "and remembered devices were forgotten.",
        "Your password was changed. {count} other sessions were signed out "
        "and remembered devices were forgotten.",
    ),
    "other_sessions_ended": (
        "Signed out {count} other session.",
        "Signed out {count} other sessions.",
    ),
    "devices_forgotten": (
        "Forgot {count} remembered device.",
        "Forgot {count} remembered devices.",
    ),
    "mfa_method_set": "Multi-Factor Authentication is now set to {label}.",
    "mfa_method_set_remember": (
        "Multi-Factor Authentication is now set to {label}. "
        "Devices are remembered for {days} days."
    ),
    "choose_a_method": "Choose Disabled or TOTP.",
    "remember_days_range": "Remember devices for 0 to {highest} days.",
    "step_up_first": "Confirm it is you, then confirm the change again.",
    "user_created": "User {name} was created.",
    "reset_nothing": "{name} has no authenticator to reset; nothing changed.",
    "reset_done": "Two-factor authentication of {name} was reset; their sessions ended.",
    "unlocked": "{name} was unlocked and can enter a code again.",
    "unlock_nothing": "{name} was not throttled or locked; nothing changed.",
    "user_sessions_ended": (
        "{count} session of {name} ended.",
        "{count} sessions of {name} ended.",
    ),
    "last_admin": "{name} is the last administrator and cannot be revoked.",
    "admin_unchanged": "Nothing changed: {name} already has these rights.",
    "admin_granted": "{name} is now an administrator.",
    "admin_revoked": "{name} is no longer an administrator.",
    "bad_audit_filter": "Some filters were not understood; showing every event.",
    # The gateway's access rules page.
    "bad_access_test": "Check the URL to test and try again.",
    "bad_access_url": "Enter a whole http:// or https:// address, such as https://app.example.com/page.",
    "no_such_user": "There is no user with this name.",
    # Groups (the gateway's `group:` subjects and Remote-Groups).
    "bad_group_name": (
        "A group name is 1-64 characters: letters, digits and . _ - "
        "(no spaces or commas). Nothing changed."
    ),
    "too_many_groups": "{name} is already in {most} groups, the most allowed. Nothing changed.",
    "group_added": "{name} is now in the group {group}.",
    "group_already": "{name} is already in the group {group}; nothing changed.",
    "group_removed": "{name} is no longer in the group {group}.",
    "group_not_member": "{name} is not in the group {group}; nothing changed.",
}


def text(key: str, **params) -> str:
    """The message `key` in the page's language, filled in. An unknown key is a bug,
    not a blank message; a missing translation is English (Babel's fallback)."""
    message = MESSAGES[key]
    if not isinstance(message, str):
        raise TypeError(f"{key!r} has plural forms: read it through counted()")
    translated = get_translations().ugettext(message)
    return translated.format(**params) if params else translated


def counted(key: str, count: int, **params) -> str:
    """The message `key` in the plural form the language uses for `count`, filled in."""
    singular, plural = MESSAGES[key]
    return get_translations().ungettext(singular, plural, count).format(count=count, **params)


def wait(retry_after: int, *, code: bool) -> str:
    """ "Too many wrong codes (or failed sign-ins). Wait N seconds, then try again." """
    return counted("code_wait" if code else "password_wait", retry_after)


def drift_hint(steps: int, period: int) -> str:
    """ "This code was valid about N minutes ago/from now…", for a phone clock that is off."""
    minutes = max(1, round(abs(steps) * period / 60))
    return counted("drift_hint_ago" if steps < 0 else "drift_hint_ahead", minutes)


def extract(fileobj, keywords, comment_tags, options):
    """Babel's extractor for this table (babel.cfg): each message, with its plural
    form where it has one, so `make translations` finds them without markers."""
    tree = ast.parse(fileobj.read())
    table = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "MESSAGES"
    )
    for key, value in zip(table.keys, table.values, strict=True):
        comment = [f"messages.{key.value}"]
        if isinstance(value, ast.Constant):
            yield value.lineno, "gettext", value.value, comment
        else:
            forms = tuple(element.value for element in value.elts)
            yield value.lineno, "ngettext", forms, comment
