"""The tables. Each model holds one thing the product talks about; the rules that
change them live in the service modules (`sessions`, `totp`, `throttle`, ...)."""

from __future__ import annotations

from flask_login import UserMixin
from peewee import (
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from .db import db


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class User(UserMixin, BaseModel):
    username = CharField(max_length=150, unique=True)
    password_hash = CharField(max_length=255)
    is_admin = BooleanField(default=False)
    created_at = DateTimeField()
    # Set by an administrator's reset until the user sets up again: they are told why.
    mfa_reset_at = DateTimeField(null=True)
    # Where notices go: the confirmed address (set by an administrator, or confirmed by
    # its link), and one the user asked for that waits for its link.
    email = CharField(max_length=254, null=True)
    pending_email = CharField(max_length=254, null=True)
    time_zone = CharField(max_length=64, null=True)  # an IANA name; mails say UTC if None
    locale = CharField(max_length=16, null=True)  # the saved language
    # MFA policy: when set-up was first required of this user, and until when they may
    # postpone it (kept on the server; a policy change may shorten it).
    mfa_required_since = DateTimeField(null=True)
    mfa_deadline = DateTimeField(null=True)
    # WebAuthn's user handle: 64 random bytes, never the username (it is stored in
    # every passkey and returned at a usernameless sign-in). Made at the first key.
    webauthn_user_handle = BlobField(null=True, unique=True)
    # OpenID Connect's `sub`: random, stable, never the username (made at first use).
    oidc_subject = CharField(max_length=64, null=True, unique=True)


class TotpCredential(BaseModel):
    """A confirmed authenticator. The secret is Fernet-encrypted; `last_used_step`
    is the replay guard, only ever raised by one conditional UPDATE."""

    user = ForeignKeyField(User, unique=True, on_delete="CASCADE", backref="totp_credentials")
    secret_encrypted = TextField()
    algorithm = CharField(max_length=10, default="SHA1")
    digits = IntegerField(default=6)
    period = IntegerField(default=30)
    confirmed_at = DateTimeField()
    last_used_step = BigIntegerField()


class RecoveryCode(BaseModel):
    """One single-use recovery code of a user; only its SHA-256 is kept (80 random
    bits: a slow hash adds nothing). `used_at` is set once, by a conditional UPDATE."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="recovery_codes")
    code_hash = CharField(max_length=64)
    created_at = DateTimeField()
    used_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("user", "code_hash"), True),)


class RememberedDevice(BaseModel):
    """A browser that skips the code (never the password) until `expires_at`.

    The cookie holds a random token; here is its hash, bound to the credential it was
    proven with and to a fingerprint of the password hash of that time, so a reset,
    a new authenticator or a password change revokes it without a lookup elsewhere."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="remembered_devices")
    credential = ForeignKeyField(TotpCredential, on_delete="CASCADE")
    token_hash = CharField(max_length=64, unique=True)
    password_fingerprint = CharField(max_length=64)
    created_at = DateTimeField()
    expires_at = DateTimeField(index=True)
    last_used_at = DateTimeField(null=True)
    ip = CharField(max_length=64, null=True)
    user_agent = CharField(max_length=255, null=True)


class MfaThrottle(BaseModel):
    """Consecutive second-factor failures of one account, shared by all its logins."""

    user = ForeignKeyField(User, primary_key=True, on_delete="CASCADE")
    failures = IntegerField(default=0)
    last_failure_at = DateTimeField(null=True)


class PasswordThrottle(BaseModel):
    """Consecutive wrong passwords for one username (hashed; it may name nobody)."""

    key = CharField(max_length=64, primary_key=True)
    failures = IntegerField(default=0)
    last_failure_at = DateTimeField(null=True)


class TrustedBrowser(BaseModel):
    """A browser that completed a sign-in as `user` (OWASP's "device cookie"): its
    password attempts for that user are counted here, on its own, so a stranger's
    wrong passwords for the username never slow it down. It skips nothing.

    The cookie holds a random token; here is its hash, bound to a fingerprint of the
    password hash of that time (a password change revokes it without a lookup)."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="trusted_browsers")
    token_hash = CharField(max_length=64, unique=True)
    password_fingerprint = CharField(max_length=64)
    created_at = DateTimeField()
    last_used_at = DateTimeField()
    expires_at = DateTimeField(index=True)
    failures = IntegerField(default=0)
    last_failure_at = DateTimeField(null=True)


class AddressThrottle(BaseModel):
    """Password attempts from one client address (hashed; an IPv6 /64) in the hour
    that began at `window_started_at`: untrusted browsers only."""

    key = CharField(max_length=64, primary_key=True)
    window_started_at = DateTimeField(index=True)
    failures = IntegerField(default=0)
    last_failure_at = DateTimeField(null=True)


class WebSession(BaseModel):
    """A browser session. The cookie holds a random token; only its hash is here."""

    token_hash = CharField(max_length=64, unique=True)
    state = CharField(max_length=20)
    user = ForeignKeyField(User, null=True, on_delete="CASCADE", backref="web_sessions")
    created_at = DateTimeField()
    state_since = DateTimeField()
    last_seen_at = DateTimeField()
    data = TextField(default="{}")
    next_url = TextField(null=True)
    pending_secret_encrypted = TextField(null=True)
    # When this session passed the second factor (None: password only, MFA disabled).
    second_factor_at = DateTimeField(null=True)
    ip = CharField(max_length=64, null=True)
    user_agent = CharField(max_length=255, null=True)
    # When the signed-in administrator last re-proved who they are (`step_up`).
    step_up_at = DateTimeField(null=True)
    # How this session signed in: the proven methods in order, joined by commas
    # ("password,code"; `signin.methods`). None: anonymous, or signed in before 007.
    signin_methods = CharField(max_length=120, null=True)


class Setting(BaseModel):
    key = CharField(max_length=64, primary_key=True)
    value = TextField()


class ApiToken(BaseModel):
    user = ForeignKeyField(User, on_delete="CASCADE", backref="api_tokens")
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField()
    last_used_at = DateTimeField(null=True)


class UserGroup(BaseModel):
    """A user's membership of a named group: the gateway's `group:` subjects and its
    `Remote-Groups` header. Names are checked by `directory.groups` (no comma, no space)."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="group_memberships")
    name = CharField(max_length=64)

    class Meta:
        indexes = ((("user", "name"), True),)


class EmailConfirmation(BaseModel):
    """A link sent to an address a user set themselves: single-use, expiring, hashed."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="email_confirmations")
    address = CharField(max_length=254)
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField()
    expires_at = DateTimeField(index=True)
    used_at = DateTimeField(null=True)


class Notice(BaseModel):
    """The outbox: a mail queued in its event's transaction, sent once after it."""

    user = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="notices")
    to_address = CharField(max_length=254)
    kind = CharField(max_length=40, index=True)
    facts = TextField(default="{}")  # JSON: when, IP, browser, counts; never a secret
    created_at = DateTimeField()
    next_attempt_at = DateTimeField(index=True)
    attempts = IntegerField(default=0)
    claimed_until = DateTimeField(null=True)  # a sender's lease (conditional update)
    sent_at = DateTimeField(null=True, index=True)
    last_error = TextField(null=True)


class AppPassword(BaseModel):
    """A named secret that a client unable to follow the sign-in page (a calendar, a
    sync client, a script) sends to the gateway as Basic credentials. 160 random bits:
    only their SHA-256 is kept (a slow hash adds nothing to a random secret, and the
    gateway checks one on every request of such a client, with one indexed query).
    `two_factor`: it was made after proving a second factor, so it satisfies a
    `two_factor` rule. Revoked rows stay (the list says when) until the name is reused."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="app_passwords")
    name = CharField(max_length=64)
    secret_hash = CharField(max_length=64, unique=True)
    two_factor = BooleanField(default=False)
    created_at = DateTimeField()
    last_used_at = DateTimeField(null=True)
    last_used_ip = CharField(max_length=64, null=True)
    revoked_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("user", "name"), True),)


class WebAuthnCredential(BaseModel):
    """A passkey or a security key of a user (`factors.webauthn`): its public key and
    what the authenticator said of itself at registration. `sign_count` only rises;
    `clone_warning_at` is set when it went backwards (that sign-in was refused)."""

    user = ForeignKeyField(User, on_delete="CASCADE", backref="webauthn_credentials")
    credential_id = BlobField(unique=True)
    public_key = BlobField()
    sign_count = BigIntegerField(default=0)
    aaguid = CharField(max_length=36)
    transports = CharField(max_length=255, default="")  # comma-separated, as reported
    name = CharField(max_length=64)
    kind = CharField(max_length=16)  # "passkey" or "security_key"
    backup_eligible = BooleanField(default=False)
    backup_state = BooleanField(default=False)  # synced to other devices
    rp_id = CharField(max_length=253)  # the RP ID it was made for; another one orphans it
    user_verified = BooleanField(default=False)  # at registration
    fmt = CharField(max_length=32, default="none")  # the attestation format
    created_at = DateTimeField()
    last_used_at = DateTimeField(null=True)
    clone_warning_at = DateTimeField(null=True)

    class Meta:
        table_name = "webauthn_credential"
        indexes = ((("user", "name"), True),)


class WebAuthnChallenge(BaseModel):
    """A ceremony's challenge: single-use (deleted by the one request that uses it),
    bound to the browser session that asked for it (`binding`: the SHA-256 of a random
    token that session keeps, signed in or not), and short-lived."""

    binding = CharField(max_length=64)
    purpose = CharField(max_length=24)
    challenge = BlobField()
    user = ForeignKeyField(User, null=True, on_delete="CASCADE")
    created_at = DateTimeField()
    expires_at = DateTimeField(index=True)

    class Meta:
        table_name = "webauthn_challenge"
        indexes = ((("binding", "purpose"), True),)


class OidcClient(BaseModel):
    """An application that signs people in through the portal with OpenID Connect,
    registered by an administrator (`oidc.clients`). A confidential client's secret is
    256 random bits: only its SHA-256 is kept (as app passwords, a slow hash adds
    nothing to a random secret). No secret: a public client (PKCE alone). `policy` and
    `subjects` are the gateway's words (`one_factor`, `two_factor`,
    `phishing_resistant`; `group:NAME`, `user:NAME`, space-separated; empty: anyone)."""

    name = CharField(max_length=64, unique=True)
    client_id = CharField(max_length=64, unique=True)
    secret_hash = CharField(max_length=64, null=True)
    redirect_uris = TextField()  # one per line, matched exactly
    post_logout_redirect_uris = TextField(default="")  # one per line, matched exactly
    policy = CharField(max_length=24, default="two_factor")
    subjects = TextField(default="")
    offline = BooleanField(default=False)  # may receive refresh tokens (offline_access)
    launch_url = CharField(max_length=2048, null=True)  # the home page's link
    created_at = DateTimeField()
    secret_changed_at = DateTimeField(null=True)


class OidcAuthorizationCode(BaseModel):
    """A code given to a client's redirect URI: single-use, short-lived, bound to the
    client, the redirect URI and the PKCE challenge; only its SHA-256 is kept. `family`
    is shared with every token made from it, so a second use of the code revokes them."""

    code_hash = CharField(max_length=64, unique=True)
    client = ForeignKeyField(OidcClient, on_delete="CASCADE", backref="codes")
    user = ForeignKeyField(User, on_delete="CASCADE")
    redirect_uri = TextField()
    scope = TextField()
    nonce = TextField(null=True)
    code_challenge = CharField(max_length=128)
    code_challenge_method = CharField(max_length=8)
    auth_time = DateTimeField()  # when the portal session proved who it is
    amr = CharField(max_length=120, default="")  # RFC 8176 values, space-separated
    acr = CharField(max_length=120, null=True)
    session_hash = CharField(max_length=64, null=True)  # the web session's token hash
    family = CharField(max_length=64)
    created_at = DateTimeField()
    expires_at = DateTimeField(index=True)
    used_at = DateTimeField(null=True)


class OidcToken(BaseModel):
    """An access token and, with `offline_access`, a refresh token, both stored as
    SHA-256 hashes. A refresh rotates: the used row is marked `rotated_at` and a new
    row of the same `family` is made; a rotated refresh token used again revokes the
    whole family (it was stolen, or replayed)."""

    access_token_hash = CharField(max_length=64, unique=True)
    refresh_token_hash = CharField(max_length=64, unique=True, null=True)
    client = ForeignKeyField(OidcClient, on_delete="CASCADE", backref="tokens")
    user = ForeignKeyField(User, on_delete="CASCADE")
    scope = TextField()
    auth_time = DateTimeField()
    amr = CharField(max_length=120, default="")
    acr = CharField(max_length=120, null=True)
    session_hash = CharField(max_length=64, null=True, index=True)
    family = CharField(max_length=64, index=True)
    issued_at = DateTimeField()
    access_expires_at = DateTimeField(index=True)
    refresh_expires_at = DateTimeField(null=True)
    rotated_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)


class OidcSigningKey(BaseModel):
    """A key that signs ID tokens: the private JWK encrypted with the application's
    encryption keys, the public JWK in clear (published). `retired_at`: no longer
    signs; its public half is published until the tokens it signed have expired."""

    kid = CharField(max_length=64, unique=True)
    alg = CharField(max_length=8)  # RS256 or ES256
    private_jwk_encrypted = TextField()
    public_jwk = TextField()
    created_at = DateTimeField()
    retired_at = DateTimeField(null=True, index=True)


class AuditEvent(BaseModel):
    at = DateTimeField(index=True)
    event = CharField(max_length=40, index=True)
    outcome = CharField(max_length=20)
    username = CharField(max_length=150, null=True, index=True)
    actor = CharField(max_length=150, null=True)
    ip = CharField(max_length=64, null=True)
    detail = TextField(null=True)


# Every table, in dependency order. The schema itself is made by the migrations
# (`standalone_mfa/migrations`, `flask --app standalone_mfa db upgrade`); tests check
# that they build exactly these models.
ALL_MODELS = [
    User,
    TotpCredential,
    RecoveryCode,
    RememberedDevice,
    MfaThrottle,
    PasswordThrottle,
    TrustedBrowser,
    AddressThrottle,
    WebSession,
    Setting,
    ApiToken,
    UserGroup,
    EmailConfirmation,
    Notice,
    AppPassword,
    WebAuthnCredential,
    WebAuthnChallenge,
    OidcClient,
    OidcAuthorizationCode,
    OidcToken,
    OidcSigningKey,
    AuditEvent,
]
