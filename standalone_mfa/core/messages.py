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
    # The code step a `phishing_resistant` rule asked for takes only a key.
    "key_only": (
        "This app asks for your passkey or security key: a code is not enough here. "
        "Use your key, or cancel and sign out."
    ),
    # A passkey sign-in names no account: its attempts count on the client's address.
    "signin_wait": (
        "Too many failed sign-ins from your network. Wait {count} second, then try again.",
        "Too many failed sign-ins from your network. Wait {count} seconds, then try again.",
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
        "This code will only be valid in about {count} minute. "
        "Your phone's clock may be wrong; turn on automatic time.",
        "This code will only be valid in about {count} minutes. "
        "Your phone's clock may be wrong; turn on automatic time.",
    ),
    "need_code": "Enter the current code from your authenticator app.",
    "need_code_or_recovery": (
        "Enter the current code from your authenticator app, or a recovery code."
    ),
    "need_key": "Use your security key or passkey to confirm it is you.",
    "need_key_or_recovery": "Use your security key or passkey, or enter a recovery code.",
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
    # Who must use MFA (signin.policy): a set-up postponed within the grace period.
    "setup_postponed": (
        "You are signed in. Set up two-factor authentication within {count} day: "
        "after that you cannot sign in without it.",
        "You are signed in. Set up two-factor authentication within {count} days: "
        "after that you cannot sign in without it.",
    ),
    "cannot_postpone": (
        "Set-up can no longer be postponed. Set up your authenticator app to continue."
    ),
    "setup_days_left": (
        "Your administrator requires two-factor authentication: {count} day left to set it up.",
        "Your administrator requires two-factor authentication: {count} days left to set it up.",
    ),
    # Proving it is you again while signed in (account changes, administrators' step-up).
    "reauth_confirmed": (
        "Thank you. You can make administrative changes for the next {count} minute.",
        "Thank you. You can make administrative changes for the next {count} minutes.",
    ),
    "new_authenticator_expired": "Setting up the new app took too long. Start again.",
    # Pages: what a view says after an action. A (singular, plural) pair is read
    # through `counted`, which picks the form the page's language uses for the number.
    "signed_out": "You have signed out.",
    # SC-67: signed in for the apps, but this browser lacks the portal's own cookie.
    "sign_in_again_here": "Sign in again to open this page.",
    # SC-68: a form posted to the portal from another site (or a sibling subdomain).
    "cross_site_form": (
        "This form was sent from another site, so nothing was done. "
        "To make this change, open this site's own page and send the form from there."
    ),
    # OpenID Connect: a sign-in request that names no registered application, or a
    # redirect URI it did not register (SC-57: shown here, never redirected to).
    "oidc_bad_request": (
        "This sign-in link is not valid: the application or its return address is not "
        "one registered here. Open the application again, or tell its administrator."
    ),
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
    # Passkeys and security keys. A refused key never says why (whose it is, which
    # check failed): the audit trail does.
    "key_not_accepted": (
        "That passkey or security key was not accepted. Try again, or use another way."
    ),
    "key_name_invalid": "Give the key a name of 1 to 64 characters.",
    "key_name_taken": "You already have a key with that name: choose another.",
    "key_not_found": "That key is not one of yours any more.",
    "key_registered": "That key is already registered.",
    "no_app_use_key": (
        "Your account has no authenticator app: use your passkey or security key, "
        "or a recovery code."
    ),
    "set_up_with_key": "Your key is set up. Save your recovery codes now.",
    "key_added": "Your key was added.",
    "key_renamed": "The key was renamed.",
    "key_removed": "The key was removed.",
    "new_codes_made": "New recovery codes were made. The old ones no longer work.",
    "prove_first": "Start by confirming your password and a current code.",
    "prove_password_first": "Start by confirming your password.",
    "has_authenticator": "You already have an authenticator app; you can move to a new one.",
    "first_authenticator_set_up": (
        "Your authenticator app is set up: you will need it each time you sign in. "
        "Save your recovery codes now; they are shown once."
    ),
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
        "Devices are remembered for {count} day.",
        "Multi-Factor Authentication is now set to {label}. "
        "Devices are remembered for {count} days.",
    ),
    "choose_a_method": "Choose Disabled or TOTP.",
    "mfa_scope_saved": ("Required for {who}; users who must set up do so at their next sign-in."),
    "mfa_scope_saved_grace": (
        "Required for {who}; users who must set up may postpone it for {count} day.",
        "Required for {who}; users who must set up may postpone it for {count} days.",
    ),
    "mfa_groups_empty": (
        "No user is in {names} yet: its members will have to use MFA once added."
    ),
    "choose_who": (
        "Choose who must use Multi-Factor Authentication: everyone, or members of chosen groups."
    ),
    "name_a_group": (
        "Name at least one group (comma-separated), or require MFA for everyone. Nothing changed."
    ),
    "bad_mfa_groups": (
        "Not a group name: {names}. A group name is 1-64 characters: letters, digits and "
        ". _ - (separate names with commas). Nothing changed."
    ),
    "grace_days_range": "The grace period is 0 to {highest} days. Nothing changed.",
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
    # Audit events and browsers in people's words (EVENT_LABELS below; core.browsers).
    "event_unknown": "Other security event",
    "unknown_browser": "Unknown browser",
    "browser_on_system": "{browser} on {system}",
    "unknown_browser_on_system": "Unknown browser on {system}",
    # The gateway's access rules page.
    "bad_access_test": "Check the URL to test and try again.",
    "bad_access_url": "Enter a whole http:// or https:// address, such as https://app.example.com/page.",
    "no_such_user": "There is no user with this name.",
    # Languages (web.i18n).
    "language_saved": "Your pages and mails are now in {language}.",
    "language_follows_browser": (
        "Your pages now follow your browser's language; mails are in {language}."
    ),
    "choose_a_language": "Choose one of the languages in the list.",
    # Users, created by an administrator (the Users page, the CLI).
    "bad_username": (
        "A username is 1-150 characters: letters, digits and . _ @ + - "
        "(starting with a letter or digit). Nothing changed."
    ),
    "new_password_too_short": (
        "A password needs at least {count} character. Nothing changed.",
        "A password needs at least {count} characters. Nothing changed.",
    ),
    "new_password_too_long": (
        "A password can have at most {count} character. Nothing changed.",
        "A password can have at most {count} characters. Nothing changed.",
    ),
    "user_exists": "A user named {name} already exists. Nothing changed.",
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
    # App passwords (factors.app_passwords), for clients that cannot sign in on a page.
    "app_password_bad_name": (
        'Give the app password a name of 1-{most} characters, such as "Phone calendar". '
        "Nothing changed."
    ),
    "app_password_name_taken": (
        "You already have an app password named {name}. Choose another name; nothing changed."
    ),
    "app_password_limit": (
        "You have {most} app passwords, the most there can be. Revoke one you no longer "
        "use first; nothing changed."
    ),
    "app_password_revoked": (
        "App password {name} revoked: apps that use it are refused from their next request."
    ),
    "app_password_not_found": "You have no working app password of that name; nothing changed.",
    # Applications: OpenID clients an administrator registers (oidc.clients).
    "client_bad_name": "Give the application a name of 1-64 printable characters (Grafana, say).",
    "client_name_taken": "An application named {name} exists already. Choose another name.",
    "client_needs_uri": (
        "Give at least one redirect URI: the address where the application receives the "
        "sign-in, as its documentation names it."
    ),
    "client_bad_uri": (
        "{uri} cannot be used: write a whole https:// address (http:// only on localhost or "
        "a loopback address), without a # fragment, a user name, a password or spaces."
    ),
    "client_too_many_uris": "At most {most} addresses in one list.",
    "client_bad_policy": "Choose how people must have signed in from the list.",
    "client_bad_subject": (
        "{subject} is not user:NAME or group:NAME. Separate several with spaces or commas."
    ),
    "client_removed": (
        "{name} was removed: people can no longer sign in to it through the portal, and "
        "the tokens it held stopped working."
    ),
}

# Each (event, outcome) `audit.record` writes, as the sign-in activity and the audit log
# show it; the raw names stay the audit log's filter values and its secondary text.
# tests/meta/test_labels.py reads every audit.record call and names any pair missing here.
EVENT_LABELS = {
    # Signing in and out.
    ("login", "ok"): "Signed in",
    ("login", "failed"): "Wrong password",
    ("login", "throttled"): "Sign-in refused: too many wrong passwords",
    ("totp", "ok"): "Code accepted",
    ("totp", "failed"): "Wrong code",
    ("totp_replay", "refused"): "Code refused: already used",
    ("totp_throttled", "wait"): "Code refused: too many wrong codes, waiting",
    ("totp_throttled", "locked"): "Code refused: locked",
    ("totp_locked", "locked"): "Locked after too many wrong codes",
    ("recovery_code", "ok"): "Recovery code accepted",
    ("recovery_code", "failed"): "Wrong recovery code",
    ("remembered_device", "used"): "Remembered device used",
    ("device_remembered", "ok"): "Device remembered",
    ("logout", "ok"): "Signed out",
    ("pending_expired", "ended"): "Sign-in not finished in time",
    ("session_ended", "mfa_required"): "Signed out: two-factor sign-in now required",
    ("second_factor_required", "ok"): "Code asked for by a protected app",
    ("phishing_resistance_required", "ok"): "Passkey or security key asked for by a protected app",
    ("gateway_denied", "denied"): "Access to a protected app refused",
    ("gateway_refused", "malformed"): "Protected app check refused: malformed request",
    ("cross_site_refused", "refused"): "Form sent from another site refused",
    # People's own changes, and proving it is them.
    ("reauth", "ok"): "Identity confirmed",
    ("reauth", "failed"): "Identity not confirmed",
    ("reauth", "throttled"): "Identity not confirmed: too many attempts",
    ("totp_enrolled", "ok"): "Authenticator app set up",
    ("totp_enrolled", "failed"): "Wrong code from the new authenticator app",
    ("setup_postponed", "ok"): "Set-up of the authenticator app postponed",
    ("email_change", "requested"): "New email address asked for: link sent",
    ("email_change", "confirmed"): "New email address confirmed",
    ("email_change", "cancelled"): "New email address cancelled",
    ("email_change", "expired"): "Email confirmation link expired",
    ("email_change", "not_valid"): "Email confirmation link refused",
    ("time_zone_set", "ok"): "Time zone changed",
    ("language_set", "ok"): "Language changed",
    ("totp_reenrolled", "ok"): "Moved to a new authenticator app",
    ("totp_reenrolled", "failed"): "Wrong code from the new authenticator app",
    ("recovery_codes_generated", "ok"): "Recovery codes made",
    ("password_changed", "ok"): "Password changed",
    ("session_revoked", "ok"): "Sessions signed out",
    ("remembered_device", "revoked"): "Remembered devices forgotten",
    # Administrators.
    ("user_created", "ok"): "User created",
    ("totp_reset", "ok"): "Authenticator reset by an administrator",
    ("unlock", "ok"): "Unlocked by an administrator",
    ("unlock", "unchanged"): "Unlock: nothing was locked",
    ("admin_granted", "ok"): "Administrator rights granted",
    ("admin_granted", "unchanged"): "Administrator rights: already granted",
    ("admin_granted", "refused"): "Administrator rights: grant refused",
    ("admin_revoked", "ok"): "Administrator rights revoked",
    ("admin_revoked", "unchanged"): "Administrator rights: already not an administrator",
    ("admin_revoked", "refused"): "Administrator rights: last administrator kept",
    ("group_add", "ok"): "Added to a group",
    ("group_add", "unchanged"): "Already in the group",
    ("group_remove", "ok"): "Removed from a group",
    ("group_remove", "unchanged"): "Not in the group",
    ("token_created", "ok"): "API token created",
    ("token_revoked", "ok"): "API tokens revoked",
    ("token_revoked", "unchanged"): "API tokens: none to revoke",
    ("mfa_method_changed", "ok"): "Multi-Factor Authentication method changed",
    ("mfa_method_changed", "unchanged"): "Multi-Factor Authentication method saved unchanged",
    ("remember_days_changed", "ok"): "Days to remember devices changed",
    ("remember_days_changed", "unchanged"): "Days to remember devices saved unchanged",
    ("mfa_scope_changed", "ok"): "Who must use Multi-Factor Authentication changed",
    ("mfa_scope_changed", "unchanged"): "Who must use Multi-Factor Authentication saved unchanged",
    ("mfa_grace_changed", "ok"): "Days to set up the authenticator app changed",
    ("mfa_grace_changed", "unchanged"): "Days to set up the authenticator app saved unchanged",
    ("email_set", "ok"): "Email address set by an administrator",
    ("email_set", "unchanged"): "Email address saved unchanged",
    ("email_removed", "ok"): "Email address removed by an administrator",
    ("email_removed", "unchanged"): "Email address: none to remove",
    ("audit_pruned", "ok"): "Old audit events deleted",
    # App passwords.
    ("app_password_created", "ok"): "App password created",
    ("oidc_client_added", "ok"): "OpenID client added",
    ("oidc_client_removed", "ok"): "OpenID client removed",
    ("oidc_client_secret", "ok"): "OpenID client secret replaced",
    ("oidc_signin", "ok"): "Signed in to an OpenID application",
    ("oidc_signin", "denied"): "Sign-in to an OpenID application refused",
    ("oidc_code_reused", "denied"): "OpenID code used twice: its tokens revoked",
    ("oidc_refresh_reused", "denied"): "OpenID refresh token used twice: its tokens revoked",
    ("oidc_client_auth", "failed"): "OpenID client authentication failed",
    ("oidc_logout", "ok"): "Signed out by an OpenID application",
    ("oidc_keys_rotated", "ok"): "OpenID signing keys rotated",
    ("app_password_revoked", "ok"): "App password revoked",
    ("app_password_revoked", "unchanged"): "App password: none to revoke",
    ("app_password", "failed"): "Wrong app password at a protected app",
    ("app_password", "throttled"): "App password refused: too many failures from this address",
    # Passkeys and security keys.
    ("webauthn_added", "ok"): "Passkey or security key added",
    ("webauthn_added", "refused"): "Passkey or security key not added",
    ("webauthn_renamed", "ok"): "Passkey or security key renamed",
    ("webauthn_removed", "ok"): "Passkey or security key removed",
    ("webauthn_used", "ok"): "Passkey or security key used",
    ("webauthn_used", "refused"): "Passkey or security key refused",
    ("webauthn", "failed"): "Wrong passkey or security key after the password",
    ("webauthn_clone", "refused"): "Passkey or security key refused: its counter went backwards",
    ("webauthn_reset", "ok"): "Passkeys and security keys removed by an administrator",
    # Notices by mail.
    ("notice", "sent"): "Email notice sent",
    ("notice", "failed"): "Email notice not sent yet: will retry",
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


def event_label(event: str | None, outcome: str | None) -> str:
    """What an audit row says to people, in the page's language. A pair no label
    knows (a row an older or newer release wrote) reads as a generic event, never as
    an error."""
    label = EVENT_LABELS.get((event, outcome))
    return get_translations().ugettext(label) if label else text("event_unknown")


def wait(retry_after: int, *, code: bool) -> str:
    """ "Too many wrong codes (or failed sign-ins). Wait N seconds, then try again." """
    return counted("code_wait" if code else "password_wait", retry_after)


def drift_hint(steps: int, period: int) -> str:
    """ "This code was valid about N minutes ago/from now…", for a phone clock that is off."""
    minutes = max(1, round(abs(steps) * period / 60))
    return counted("drift_hint_ago" if steps < 0 else "drift_hint_ahead", minutes)


def extract(fileobj, keywords, comment_tags, options):
    """Babel's extractor for this file (babel.cfg): each message of MESSAGES, with its
    plural form where it has one, and each label of EVENT_LABELS, so `make
    translations` finds them without markers."""
    tree = ast.parse(fileobj.read())
    tables = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None)
    }
    for key, value in zip(tables["MESSAGES"].keys, tables["MESSAGES"].values, strict=True):
        comment = [f"messages.{key.value}"]
        if isinstance(value, ast.Constant):
            yield value.lineno, "gettext", value.value, comment
        else:
            forms = tuple(element.value for element in value.elts)
            yield value.lineno, "ngettext", forms, comment
    labels = tables["EVENT_LABELS"]
    for key, value in zip(labels.keys, labels.values, strict=True):
        event, outcome = (element.value for element in key.elts)
        yield value.lineno, "gettext", value.value, [f"event {event} {outcome}"]
