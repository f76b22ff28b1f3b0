"""What people read when a step does not go through: one table, read through one strict
accessor, so that every page says the same thing the same way (and a translation has
one place to go). A message never names a secret, a code or a password."""

from __future__ import annotations

MESSAGES = {
    # Passwords. At sign-in the answer never says whether the username exists.
    "wrong_password_or_username": "The username or password is not right.",
    "wrong_password": "That password is not right.",
    "password_wait": "Too many failed sign-ins for this username. Wait {wait}, then try again.",
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
    "code_wait": "Too many wrong codes. Wait {wait}, then try again.",
    "too_many_codes": "Too many wrong codes. Please sign in again.",
    "locked": (
        "Two-factor sign-in for this account is locked after too many wrong codes. "
        "Ask an administrator to unlock it."
    ),
    "drift_hint": (
        "This code was valid about {minutes} {unit} {direction}. "
        "Your phone's clock may be wrong; turn on automatic time."
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
    "recovery_used": "Recovery code accepted. You have {count} recovery {noun} left.",
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
    # Pages: what a view says after an action. A key ending in _one / _many is read
    # through `counted`, which picks by the number (a translation's plural forms).
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
    "password_changed_one": (
        "Your password was changed. {count} other session was signed out "
        "and remembered devices were forgotten."
    ),
    "password_changed_many": (
        "Your password was changed. {count} other sessions were signed out "
        "and remembered devices were forgotten."
    ),
    "other_sessions_ended_one": "Signed out {count} other session.",
    "other_sessions_ended_many": "Signed out {count} other sessions.",
    "devices_forgotten_one": "Forgot {count} remembered device.",
    "devices_forgotten_many": "Forgot {count} remembered devices.",
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
    "user_sessions_ended": "{count} session(s) of {name} ended.",
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
    # Email addresses and the time zone of mails.
    "email_already_yours": "That is already your address; nothing changed.",
    "email_no_mail": (
        "This site sends no mail, so a new address cannot be confirmed. "
        "Ask your administrator to set it."
    ),
    "email_link_sent": (
        "A link to confirm it was sent to {address}; it works once, within {hours} hours. "
        "Until then notices still go to your current address."
    ),
    "email_confirmed": "Your address is now {address}: notices go there from now on.",
    "email_link_expired": (
        "This link has expired. Ask for a new one on your Account security page."
    ),
    "email_link_not_valid": (
        "This link does not work: it was already used, a newer change replaced it, "
        "or it belongs to another account."
    ),
    "email_too_many": (
        "At most {most} confirmation links are sent an hour. Try again later; nothing changed."
    ),
    "email_change_cancelled": "The change of address was cancelled.",
    "time_zone_set": "Times in your mails are now in {zone}.",
    "bad_time_zone": (
        "Choose a time zone from the list, such as Europe/Paris, or leave it empty for UTC."
    ),
    "email_set": "The address of {name} is now {address}.",
    "email_unchanged": "{name} already has the address {address}; nothing changed.",
    "email_removed": "{name} has no address now: they get no notices.",
    "email_none": "{name} had no address; nothing changed.",
}


def text(key: str, **params) -> str:
    """The message `key`, filled in. An unknown key is a bug, not a blank message."""
    return MESSAGES[key].format(**params) if params else MESSAGES[key]


def counted(key: str, count: int, **params) -> str:
    """The message `key_one` or `key_many` for `count`, filled in."""
    return text(f"{key}_one" if count == 1 else f"{key}_many", count=count, **params)


def seconds(count: int) -> str:
    return f"{count} second" if count == 1 else f"{count} seconds"


def wait(retry_after: int, *, code: bool) -> str:
    """ "Too many wrong codes (or failed sign-ins). Wait N seconds, then try again." """
    return text("code_wait" if code else "password_wait", wait=seconds(retry_after))


def drift_hint(steps: int, period: int) -> str:
    """ "This code was valid about N minutes ago/from now…", for a phone clock that is off."""
    minutes = max(1, round(abs(steps) * period / 60))
    return text(
        "drift_hint",
        minutes=minutes,
        unit="minute" if minutes == 1 else "minutes",
        direction="ago" if steps < 0 else "from now",
    )
