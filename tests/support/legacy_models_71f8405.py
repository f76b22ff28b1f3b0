"""The models of release 71f8405 (`git show 71f8405:standalone_mfa/models.py`),
verbatim but for the database handle: tests/ops/test_migrations.py builds a database as
that release's `init-db` did (`db.create_tables(ALL_MODELS)`) and upgrades it. Never
edit: it is history."""

from __future__ import annotations

from flask_login import UserMixin
from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

db = DatabaseProxy()  # bound by the test to the database it builds


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


class Setting(BaseModel):
    key = CharField(max_length=64, primary_key=True)
    value = TextField()


class ApiToken(BaseModel):
    user = ForeignKeyField(User, on_delete="CASCADE", backref="api_tokens")
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField()
    last_used_at = DateTimeField(null=True)


class AuditEvent(BaseModel):
    at = DateTimeField(index=True)
    event = CharField(max_length=40, index=True)
    outcome = CharField(max_length=20)
    username = CharField(max_length=150, null=True, index=True)
    actor = CharField(max_length=150, null=True)
    ip = CharField(max_length=64, null=True)
    detail = TextField(null=True)


ALL_MODELS = [
    User,
    TotpCredential,
    RecoveryCode,
    RememberedDevice,
    MfaThrottle,
    PasswordThrottle,
    WebSession,
    Setting,
    ApiToken,
    AuditEvent,
]
