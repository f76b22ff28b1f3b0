"""Command-line administration: `standalone-mfa COMMAND` (the console script, `main`
below), the same commands as `flask --app standalone_mfa COMMAND`."""

from __future__ import annotations

import functools
import sys

import click
import peewee
from cryptography.fernet import InvalidToken
from flask.cli import AppGroup, FlaskGroup, with_appcontext

from .accounts import administration, emails, reset
from .core import addresses
from .core import audit as audit_log
from .core.clock import now
from .core.config import setting
from .core.models import User
from .directory import groups, settings, tokens, users
from .factors import app_passwords, passwords, throttle, webauthn
from .gateway import rules
from .notices import outbox, sender
from .oidc import clients
from .oidc import keys as signing_keys
from .ops import backup, keys, maintenance, schema

user_cli = AppGroup("user", help="Manage users.")
mfa_cli = AppGroup("mfa", help="Multi-Factor Authentication settings and resets.")
token_cli = AppGroup("token", help="API tokens.")
audit_cli = AppGroup("audit", help="The audit log.")
db_cli = AppGroup("db", help="The database schema: upgrade, current version, history.")
mail_cli = AppGroup("mail", help="Notices by mail: send what is pending (cron).")
app_password_cli = AppGroup(
    "app-password", help="App passwords: for calendars, sync clients and scripts (the gateway)."
)
user_cli.add_command(app_password_cli)
oidc_cli = AppGroup("oidc", help="OpenID Connect: the portal as a sign-in for other apps.")
oidc_keys_cli = AppGroup("keys", help="The keys that sign ID tokens.")
oidc_cli.add_command(oidc_keys_cli)
oidc_client_cli = AppGroup(
    "client", help="The applications that sign people in through the portal (OpenID clients)."
)
oidc_cli.add_command(oidc_client_cli)

ACTOR = "cli"


def clear_errors(command):
    """Turn a database or key problem into a one-line message and exit status 1."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (peewee.OperationalError, peewee.ProgrammingError) as exc:
            raise click.ClickException(
                f"The database is not ready ({type(exc).__name__}: {exc}). Check "
                "DATABASE_URL, and run `flask --app standalone_mfa init-db` first."
            ) from None
        except InvalidToken:
            raise click.ClickException(
                "A stored secret cannot be decrypted with MFA_ENCRYPTION_KEYS. Keep "
                "the old key in the list, after the new one, until `mfa rotate-keys` ran."
            ) from None

    return run


def _user_or_exit(username: str) -> User:
    user = users.find_user(username)
    if user is None:
        raise click.ClickException(f"No user named {username!r}.")
    return user


def _upgrade() -> None:
    try:
        ran = schema.upgrade()
    except schema.MigrationFailed as exc:
        for name in exc.ran:
            click.echo(f"Applied {name}")
        raise click.ClickException(str(exc)) from None
    except schema.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    for name in ran:
        click.echo(f"Applied {name}")
    # OpenID Connect's signing keys, made once here (the first start) rather than by
    # the first token request; several instances upgrading at once make one set.
    signing_keys.ensure_keys()
    current = schema.status().current
    click.echo(
        f"Database schema at {current}"
        + (" (nothing to do)" if not ran else "")
        + f": {_describe(setting('DATABASE_URL'))}"
    )


@db_cli.command("upgrade")
@clear_errors
def db_upgrade_command():
    """Apply every pending migration, each in its own transaction (safe to run on
    several instances at once: one migrates, the others wait)."""
    _upgrade()


@db_cli.command("current")
@clear_errors
def db_current_command():
    """Print the schema version (the last migration applied), and whether it matches."""
    found = schema.status()
    click.echo(found.current or "none (an empty database, or one made before migrations)")
    problem = found.problem()
    if problem is not None:
        click.echo(problem, err=True)
        sys.exit(1)


@db_cli.command("history")
@clear_errors
def db_history_command():
    """List the migrations applied and when, then any this code would still apply."""
    applied = schema.history()
    for name, when in applied:
        click.echo(f"{name}\tapplied {when}")
    for name in schema.status().pending:
        click.echo(f"{name}\tpending")


@click.command("init-db")
@with_appcontext
@clear_errors
def init_db_command():
    """Upgrade the schema (safe to run again) and create a first admin if there is no user."""
    _upgrade()
    click.echo(f"Database ready: {_describe(setting('DATABASE_URL'))}")
    if User.select().count() == 0:
        password = passwords.new_random_password()
        users.create_user("admin", password, is_admin=True, actor=ACTOR)
        click.echo("")
        click.echo("Created the first administrator. This password is shown only once:")
        click.echo("    username: admin")
        click.echo(f"    password: {password}")
        click.echo("")


def _describe(url: str) -> str:
    # Never print a password that may be in the URL.
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


@click.command("prune")
@with_appcontext
@clear_errors
def prune_command():
    """Delete expired sessions and pending sign-ins and stale counters (run from cron)."""
    counts = maintenance.prune(now())
    click.echo(
        "Deleted " + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())
    )


@user_cli.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--email", "address", help="Their address for notices (counts as confirmed).")
@clear_errors
def create_user_command(username, admin, password_stdin, address):
    """Create a user (asks for the password unless --password-stdin)."""
    if address is not None:
        _checked_address(address)  # before the password prompt: nothing made if it is wrong
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = users.create_user(username, password, is_admin=admin, actor=ACTOR)
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {'administrator' if admin else 'user'} {user.username!r}.")
    if address is not None:
        emails.set_by_admin(user, address, actor=ACTOR)
        click.echo(f"Notices go to {user.email}.")


def _checked_address(address: str) -> str:
    try:
        return addresses.normalise(address)
    except addresses.BadAddress as exc:
        raise click.ClickException(f"Not a usable email address: {exc} Nothing changed.") from None


@user_cli.command("email")
@click.argument("username")
@click.argument("address", required=False)
@click.option("--remove", is_flag=True, help="Take the address away: no more notices.")
@clear_errors
def user_email_command(username, address, remove):
    """Show a user's address, set it (confirmed at once), or --remove it."""
    user = _user_or_exit(username)
    if remove and address is not None:
        raise click.ClickException("Give an address or --remove, not both.")
    if remove:
        outcome = emails.remove_by_admin(user, actor=ACTOR)
        said = "no address now" if outcome == emails.CHANGED else "had no address; nothing changed"
        click.echo(f"{user.username!r} {said}.")
        return
    if address is None:
        click.echo(user.email or "none")
        if user.pending_email:
            click.echo(f"{user.pending_email} (asked for by the user, not confirmed)")
        return
    outcome = emails.set_by_admin(user, _checked_address(address), actor=ACTOR)
    if outcome == emails.CHANGED:
        click.echo(f"Notices for {user.username!r} now go to {user.email}.")
    else:
        click.echo(f"{user.username!r} already has the address {user.email}; nothing changed.")


@mfa_cli.command("method")
@click.argument("method", required=False, type=click.Choice(sorted(settings.MFA_METHODS)))
@clear_errors
def mfa_method_command(method):
    """Show the MFA method, or set it to disabled or totp."""
    if method is None:
        click.echo(settings.mfa_method())
        return
    settings.set_mfa_method(method, actor=ACTOR)
    click.echo(f"Multi-Factor Authentication is now {settings.MFA_METHODS[method]}.")


@mfa_cli.command("scope")
@click.argument("who", required=False, type=click.Choice(sorted(settings.REQUIRED_FOR)))
@click.argument("names", nargs=-1)
@clear_errors
def mfa_scope_command(who, names):
    """Show who must use MFA, or set it: `everyone`, or `groups GROUP...`."""
    if who is None:
        click.echo(settings.describe_scope(settings.mfa_required_for(), settings.mfa_groups()))
        return
    if who == settings.EVERYONE and names:
        raise click.ClickException("`mfa scope everyone` takes no group names.")
    if who == settings.GROUPS and not names:
        raise click.ClickException("Name at least one group: `mfa scope groups GROUP...`.")
    try:
        checked = [groups.group_name(name) for name in names]
    except groups.GroupError as exc:
        raise click.ClickException(str(exc)) from None
    kept = checked or settings.mfa_groups()  # `everyone` keeps the list for later
    settings.set_mfa_scope(who, kept, actor=ACTOR)
    if who == settings.EVERYONE:
        click.echo("Multi-Factor Authentication is now required for everyone.")
        return
    click.echo(
        "Multi-Factor Authentication is now required for members of: "
        + ", ".join(sorted(set(checked)))
        + "."
    )
    empty = settings.groups_without_members(checked)
    if empty:
        click.echo(
            f"No user is in {', '.join(empty)} yet: its members will have to use MFA once added."
        )


@mfa_cli.command("grace")
@click.argument("days", required=False, type=click.IntRange(0, settings.GRACE_DAYS_MAX))
@clear_errors
def mfa_grace_command(days):
    """Show or set for how many days (0-30) a user who must now set up may postpone it."""
    if days is None:
        click.echo(settings.mfa_grace_days())
        return
    settings.set_mfa_grace_days(days, actor=ACTOR)
    if days:
        click.echo(f"Users who must set up MFA may now postpone it for {days} day(s).")
    else:
        click.echo("Users who must set up MFA now do so at their next sign-in (no grace).")


@mfa_cli.command("reset")
@click.argument("username")
@clear_errors
def mfa_reset_command(username):
    """Remove a user's authenticator and every passkey and security key (lost app or
    keys): their sessions end and they set up again."""
    user = _user_or_exit(username)
    if not reset.reset_totp(user, actor=ACTOR):
        raise click.ClickException(
            f"{user.username!r} has no TOTP credential and no passkey or security key; nothing "
            f"to reset. (To let them try codes again, run `flask --app standalone_mfa user "
            f"unlock {user.username}`.)"
        )
    click.echo(f"Reset TOTP for {user.username!r}; they will set it up at their next sign-in.")


@mfa_cli.command("rotate-keys")
@clear_errors
def rotate_keys_command():
    """Re-encrypt every stored secret (TOTP secrets, set-ups in progress, recovery codes
    on show, pending notices) with the newest key."""
    rotated = keys.rotate_all()
    click.echo(f"Re-encrypted {rotated.credentials} TOTP secrets with the newest key.")
    if rotated.set_ups or rotated.shown_codes:
        click.echo(
            f"Re-encrypted {rotated.set_ups} set-ups in progress and the recovery codes "
            f"{rotated.shown_codes} sessions are showing."
        )
    if rotated.notices:
        click.echo(f"Re-encrypted the facts of {rotated.notices} pending notices.")
    if rotated.signing_keys:
        click.echo(f"Re-encrypted {rotated.signing_keys} OpenID Connect signing keys.")


@token_cli.command("create")
@click.argument("username")
@clear_errors
def token_create_command(username):
    """Create an API token for a user and print it (once) as the last line."""
    user = _user_or_exit(username)
    token = tokens.create_token(user, actor=ACTOR)
    if not user.is_admin:
        click.echo(f"Note: {user.username!r} is not an administrator; the API will answer 403.")
    click.echo("Store this token now; it cannot be shown again:")
    click.echo(token)


@token_cli.command("list")
@click.argument("username")
@clear_errors
def token_list_command(username):
    """List a user's API tokens (numbers and dates; a token itself is never shown again)."""
    user = _user_or_exit(username)
    rows = tokens.tokens_of(user)
    if not rows:
        click.echo(f"{user.username!r} has no API tokens.")
    for row in rows:
        used = (
            row.last_used_at.isoformat(timespec="seconds") + "Z" if row.last_used_at else "never"
        )
        created = row.created_at.isoformat(timespec="seconds") + "Z"
        click.echo(f"{row.id}\tcreated {created}\tlast used {used}")


@token_cli.command("revoke")
@click.argument("username")
@click.option("--id", "token_id", type=int, help="Only this token (see `token list`).")
@clear_errors
def token_revoke_command(username, token_id):
    """Revoke a user's API tokens (all of them, or one with --id); they stop working at once."""
    user = _user_or_exit(username)
    count = tokens.revoke_tokens(user, actor=ACTOR, token_id=token_id)
    if token_id is not None and not count:
        raise click.ClickException(f"{user.username!r} has no token {token_id}.")
    click.echo(f"Revoked {count} API {'token' if count == 1 else 'tokens'} of {user.username!r}.")


@app_password_cli.command("create")
@click.argument("username")
@click.argument("name")
@clear_errors
def app_password_create_command(username, name):
    """Make an app password NAME for a user and print it (once) as the last line. It
    counts as both factors: whoever runs this holds the server's keys. The user is
    told by mail."""
    user = _user_or_exit(username)
    try:
        secret = app_passwords.create(user, name, two_factor=True, actor=ACTOR)
    except app_passwords.AppPasswordError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Made the app password {name!r} of {user.username!r}.")
    click.echo("Give it to the app now; it cannot be shown again:")
    click.echo(secret)


@app_password_cli.command("list")
@click.argument("username")
@clear_errors
def app_password_list_command(username):
    """List a user's app passwords: name, made, last use and address, revoked or not."""
    user = _user_or_exit(username)
    rows = app_passwords.all_of(user)
    if not rows:
        click.echo(f"{user.username!r} has no app passwords.")
    for row in rows:
        used = (
            f"last used {_when(row.last_used_at)} from {row.last_used_ip or 'unknown'}"
            if row.last_used_at
            else "never used"
        )
        status = f"revoked {_when(row.revoked_at)}" if row.revoked_at else "working"
        factors = "two factors" if row.two_factor else "password only"
        click.echo(f"{row.name}\tmade {_when(row.created_at)} ({factors})\t{used}\t{status}")


@app_password_cli.command("revoke")
@click.argument("username")
@click.argument("name")
@clear_errors
def app_password_revoke_command(username, name):
    """Revoke a user's app password NAME: the apps that use it are refused at once."""
    user = _user_or_exit(username)
    if not app_passwords.revoke(user, name, actor=ACTOR):
        raise click.ClickException(f"{user.username!r} has no working app password {name!r}.")
    click.echo(f"Revoked the app password {name!r} of {user.username!r}.")


@user_cli.command("unlock")
@click.argument("username")
@clear_errors
def user_unlock_command(username):
    """Forgive a user's wrong codes: a throttled or locked account can try again at once."""
    user = _user_or_exit(username)
    forgiven = throttle.unlock(user, actor=ACTOR)
    if forgiven:
        click.echo(f"Unlocked {user.username!r} ({forgiven} wrong codes forgiven).")
    else:
        click.echo(f"{user.username!r} was not throttled or locked; nothing changed.")


@user_cli.command("show")
@click.argument("username")
@clear_errors
def user_show_command(username):
    """Show a user: administrator or not, two-factor status, throttles and groups."""
    user = _user_or_exit(username)
    row = administration.row_for(user)
    if row.enrolled:
        two_factor = f"set up on {_when(row.mfa_set_up_at)}"
    elif user.mfa_reset_at:
        two_factor = f"not set up (reset by an administrator on {_when(user.mfa_reset_at)})"
    else:
        two_factor = "not set up"
    codes = {
        "ok": "ok",
        "failures": f"{row.code_failures} wrong in a row",
        "throttled": f"throttled ({row.code_failures} wrong; each try waits)",
        "locked": f"locked ({row.code_failures} wrong; `user unlock` lets them try again)",
    }[row.code_throttle]
    if row.password_throttled:
        passwords_line = f"throttled ({row.password_failures} wrong; each try waits)"
    else:
        passwords_line = (
            f"{row.password_failures} wrong in a row" if row.password_failures else "ok"
        )
    for label, value in (
        ("username", row.username),
        ("administrator", "yes" if row.is_admin else "no"),
        ("created", _when(user.created_at)),
        ("two-factor", two_factor),
        ("codes", codes),
        ("passwords", passwords_line),
        ("last sign-in", _when(row.last_sign_in) if row.last_sign_in else "never"),
        ("groups", ", ".join(row.groups) if row.groups else "none"),
        ("email", (row.email or "none") + _pending(row.pending_email)),
        ("time zone", user.time_zone or "UTC"),
        ("app passwords", _app_passwords_line(user)),
        ("keys", _keys(user)),
    ):
        click.echo(f"{label + ':':<15}{value}")


def _app_passwords_line(user) -> str:
    names = [row.name for row in app_passwords.active_of(user)]
    return f"{len(names)} working ({', '.join(names)})" if names else "none"


def _keys(user) -> str:
    """A user's passkeys and security keys, one per line after the first."""
    keys = webauthn.credentials_of(user)
    if not keys:
        return "none"
    lines = []
    for key in keys:
        used = _when(key.last_used_at) if key.last_used_at else "never used"
        kind = "passkey" if key.kind == webauthn.PASSKEY else "security key"
        synced = ", synced" if key.backup_state else ""
        clone = ", a sign-in was refused (possible copy)" if key.clone_warning_at else ""
        lines.append(f"{key.name} ({kind}{synced}; added {_when(key.created_at)}; {used}{clone})")
    return ("\n" + " " * 15).join(lines)


def _pending(address: str | None) -> str:
    return f" (asked for, not confirmed: {address})" if address else ""


def _when(at) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


@user_cli.group("group")
def user_group_cli():
    """A user's groups (what the gateway's rules and Remote-Groups name)."""


def _change_group(change, username: str, group: str) -> None:
    user = _user_or_exit(username)
    try:
        result = change(user, group, actor=ACTOR)
    except groups.GroupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.message)


@user_group_cli.command("add")
@click.argument("username")
@click.argument("group")
@clear_errors
def user_group_add_command(username, group):
    """Put a user in a group (already in it: nothing changes)."""
    _change_group(groups.add, username, group)


@user_group_cli.command("remove")
@click.argument("username")
@click.argument("group")
@clear_errors
def user_group_remove_command(username, group):
    """Take a user out of a group (not in it: nothing changes)."""
    _change_group(groups.remove, username, group)


class Days(click.ParamType):
    """A number of days written `Nd`, such as `365d`."""

    name = "Nd"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        number = text.removesuffix("d")
        if text.endswith("d") and number.isascii() and number.isdigit() and len(number) <= 6:
            days = int(number)
            if 1 <= days <= audit_log.MAX_RETENTION_DAYS:
                return days
        self.fail(
            f"{value!r} is not a number of days such as 365d "
            f"(from 1d to {audit_log.MAX_RETENTION_DAYS}d).",
            param,
            ctx,
        )


@audit_cli.command("prune")
@click.option("--older-than", "days", type=Days(), required=True, help="Such as 365d.")
@clear_errors
def audit_prune_command(days):
    """Delete audit events older than N days (the pruning itself is recorded)."""
    deleted = audit_log.prune(days, actor=ACTOR)
    click.echo(f"Deleted {deleted} audit events older than {days} days.")


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
@with_appcontext
@clear_errors
def backup_command(path, force):
    """Write a consistent, verified copy of the SQLite database to PATH (mode 0600),
    while the app serves. On PostgreSQL: use pg_dump."""
    try:
        copied = backup.backup(path, force=force)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Backed up to {copied} (integrity check: ok). Keep MFA_ENCRYPTION_KEYS too.")


@mail_cli.command("send")
@click.option("--dry-run", is_flag=True, help="Show what is pending; send nothing.")
@click.option(
    "--due",
    is_flag=True,
    help="Only the notices that are due, keeping each failed one's back-off (for cron).",
)
@clear_errors
def mail_send_command(dry_run, due):
    """Send every pending notice now, without waiting for the retry back-off of those
    that failed (by hand, say after fixing the SMTP server). From cron, use --due: it
    keeps the back-off (1 minute doubling to 1 hour), as the app's own sender does.
    Each notice is sent once, whatever runs at the same time."""
    if not outbox.enabled():
        waiting = outbox.count_pending()
        raise click.ClickException(
            "MAIL_SERVER is not set: no mail is sent"
            + (f" ({waiting} notices wait in the outbox)." if waiting else ".")
        )
    if dry_run:
        waiting = outbox.pending()
        for notice in waiting:
            retry = f", attempt {notice.attempts + 1}" if notice.attempts else ""
            error = f", last error: {notice.last_error}" if notice.last_error else ""
            click.echo(
                f"{notice.id}\t{notice.kind}\tto {notice.to_address}\tdue "
                f"{_when(notice.next_attempt_at)}{retry}{error}"
            )
        click.echo(f"{len(waiting)} notices pending; nothing sent (dry run).")
        return
    total = _send_due() if due else sender.send_pending_now()
    left = outbox.count_pending()
    click.echo(
        f"Sent {total.sent} notices; {total.failed} failed and will be retried; {left} pending."
    )
    if total.failed:
        sys.exit(1)


def _send_due() -> sender.Round:
    total = sender.Round()
    while True:
        done = sender.send_due()
        total.sent += done.sent
        total.failed += done.failed
        if done.sent + done.failed < outbox.BATCH:
            return total


# --- OpenID Connect signing keys --------------------------------------------------------------


@oidc_keys_cli.command("rotate")
@clear_errors
def oidc_keys_rotate_command():
    """New signing keys (RS256, ES256); the old ones still published until their tokens
    expire."""
    kids = signing_keys.rotate()
    audit_log.record("oidc_keys_rotated", audit_log.CHANGED, actor=ACTOR, detail=" ".join(kids))
    for kid in kids:
        click.echo(f"New signing key: {kid}")
    click.echo(
        "The previous keys sign nothing more; they stay published until their tokens expire."
    )


# --- OpenID Connect clients ---------------------------------------------------------------


@oidc_client_cli.command("add")
@click.argument("name")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    metavar="URI",
    help="Where the app receives its sign-in (exact; repeat for several).",
)
@click.option("--public", is_flag=True, help="No secret: an app that cannot keep one (PKCE only).")
@click.option(
    "--policy",
    default=rules.TWO_FACTOR,
    show_default=True,
    metavar="|".join(clients.POLICIES),
    help="How a person must have signed in to use it.",
)
@click.option(
    "--subject",
    "subjects",
    multiple=True,
    metavar="group:NAME|user:NAME",
    help="Who may use it (repeat; none: everyone who can sign in).",
)
@click.option("--offline", is_flag=True, help="It may ask for refresh tokens (offline_access).")
@click.option(
    "--post-logout-redirect-uri",
    "post_logout_redirect_uris",
    multiple=True,
    metavar="URI",
    help="Where it may send people after signing out (exact; repeat for several).",
)
@click.option(
    "--launch-url",
    metavar="URL",
    help="The home page's link (default: the first redirect URI's origin).",
)
@clear_errors
def oidc_client_add_command(
    name, redirect_uris, public, policy, subjects, offline, post_logout_redirect_uris, launch_url
):
    """Register an application NAME as an OpenID client. Prints its client_id and, for a
    confidential client, its client_secret as the last lines: the secret is shown once."""
    try:
        row, secret = clients.add(
            name,
            redirect_uris,
            public=public,
            policy=policy,
            subjects=subjects,
            offline=offline,
            post_logout_redirect_uris=post_logout_redirect_uris,
            launch_url=launch_url,
            actor=ACTOR,
        )
    except clients.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Added the OpenID client {row.name!r}: {_client_summary(row)}.")
    if secret is not None:
        click.echo("Give the secret to the app now; it cannot be shown again.")
    click.echo(f"client_id: {row.client_id}")
    if secret is not None:
        click.echo(f"client_secret: {secret}")


def _client_summary(row) -> str:
    kind = "public" if clients.is_public(row) else "confidential"
    offline = ", refresh tokens" if row.offline else ""
    who = ", ".join(str(s) for s in clients.subjects(row)) or "anyone"
    return f"{kind}{offline}, policy {row.policy}, for {who}"


@oidc_client_cli.command("list")
@clear_errors
def oidc_client_list_command():
    """List the OpenID clients: name, client_id, type, policy, who may use it, redirect
    URIs and when it was added (a secret is never shown again)."""
    rows = clients.all_clients()
    if not rows:
        click.echo("No OpenID clients yet: `oidc client add NAME --redirect-uri URI` adds one.")
    for row in rows:
        kind = "public" if clients.is_public(row) else "confidential"
        if row.offline:
            kind += "+offline"
        who = " ".join(str(s) for s in clients.subjects(row)) or "anyone"
        uris = " ".join(clients.redirect_uris(row))
        click.echo(
            f"{row.name}\t{row.client_id}\t{kind}\t{row.policy}\t{who}\t{uris}"
            f"\tadded {_when(row.created_at)}"
        )


@oidc_client_cli.command("remove")
@click.argument("name")
@clear_errors
def oidc_client_remove_command(name):
    """Remove the OpenID client NAME: its codes and tokens stop working at once."""
    if not clients.remove(name, actor=ACTOR):
        raise click.ClickException(f"There is no OpenID client named {name!r}.")
    click.echo(f"Removed the OpenID client {name!r}; its tokens no longer work.")


@oidc_client_cli.command("secret")
@click.argument("name")
@clear_errors
def oidc_client_secret_command(name):
    """A new secret for the confidential client NAME, printed once as the last line; the
    old one stops working at once."""
    try:
        secret = clients.regenerate_secret(name, actor=ACTOR)
    except clients.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Replaced the secret of {name!r}; the old one no longer works.")
    click.echo("Give the new secret to the app now; it cannot be shown again.")
    click.echo(f"client_secret: {secret}")


def init_app(app) -> None:
    commands = (init_db_command, prune_command, backup_command, db_cli, mail_cli)
    for command in (*commands, user_cli, mfa_cli, token_cli, audit_cli, oidc_cli):
        app.cli.add_command(command)


def command_line() -> FlaskGroup:
    """The `standalone-mfa` command: Flask's command line over `create_app`, so every
    command of `flask --app standalone_mfa` (and `run`, `shell`, `routes`). The settings
    folder is `STANDALONE_MFA_INSTANCE`'s; a configuration error is one line and exit
    status 2 (`create_app` sees that a command line builds it)."""
    from . import create_app

    group = FlaskGroup(
        name="standalone-mfa",
        create_app=lambda: create_app(),
        help="Standalone MFA: sign-in with a password and a second factor. Settings: "
        "the config.py in the folder STANDALONE_MFA_INSTANCE names, and FLASK_* variables.",
    )
    # The app is this one: Flask's --app option has nothing to choose.
    group.params = [param for param in group.params if param.name != "app"]
    return group


def main(args=None) -> None:
    """The console script `standalone-mfa` (setup.cfg, entry_points)."""
    command_line().main(args=args, prog_name="standalone-mfa")
