"""001: the first release's schema (commit 71f8405), exactly as its `init-db` made it:
ten tables, their indexes and foreign keys. Never edit it: existing databases are
recognised by comparing their tables with this file."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Create the ten tables of the first release."""

    @migrator.create_model
    class User(pw.Model):
        id = pw.AutoField()
        username = pw.CharField(max_length=150, unique=True)
        password_hash = pw.CharField(max_length=255)
        is_admin = pw.BooleanField(default=False)
        created_at = pw.DateTimeField()
        mfa_reset_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "user"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class ApiToken(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        token_hash = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()
        last_used_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "api_token"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class AuditEvent(pw.Model):
        id = pw.AutoField()
        at = pw.DateTimeField(index=True)
        event = pw.CharField(index=True, max_length=40)
        outcome = pw.CharField(max_length=20)
        username = pw.CharField(index=True, max_length=150, null=True)
        actor = pw.CharField(max_length=150, null=True)
        ip = pw.CharField(max_length=64, null=True)
        detail = pw.TextField(null=True)

        class Meta:
            table_name = "audit_event"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class MfaThrottle(pw.Model):
        user = pw.ForeignKeyField(
            column_name="user_id",
            field="id",
            model=migrator.orm["user"],
            on_delete="CASCADE",
            primary_key=True,
        )
        failures = pw.IntegerField(default=0)
        last_failure_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "mfa_throttle"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class PasswordThrottle(pw.Model):
        key = pw.CharField(max_length=64, primary_key=True)
        failures = pw.IntegerField(default=0)
        last_failure_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "password_throttle"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class RecoveryCode(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        code_hash = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()
        used_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "recovery_code"
            legacy_table_names = False  # index names from the table name, as the models
            indexes = [(("user", "code_hash"), True)]

    @migrator.create_model
    class TotpCredential(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id",
            field="id",
            model=migrator.orm["user"],
            on_delete="CASCADE",
            unique=True,
        )
        secret_encrypted = pw.TextField()
        algorithm = pw.CharField(default="SHA1", max_length=10)
        digits = pw.IntegerField(default=6)
        period = pw.IntegerField(default=30)
        confirmed_at = pw.DateTimeField()
        last_used_step = pw.BigIntegerField()

        class Meta:
            table_name = "totp_credential"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class RememberedDevice(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        credential = pw.ForeignKeyField(
            column_name="credential_id",
            field="id",
            model=migrator.orm["totp_credential"],
            on_delete="CASCADE",
        )
        token_hash = pw.CharField(max_length=64, unique=True)
        password_fingerprint = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField(index=True)
        last_used_at = pw.DateTimeField(null=True)
        ip = pw.CharField(max_length=64, null=True)
        user_agent = pw.CharField(max_length=255, null=True)

        class Meta:
            table_name = "remembered_device"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class Setting(pw.Model):
        key = pw.CharField(max_length=64, primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "setting"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class WebSession(pw.Model):
        id = pw.AutoField()
        token_hash = pw.CharField(max_length=64, unique=True)
        state = pw.CharField(max_length=20)
        user = pw.ForeignKeyField(
            column_name="user_id",
            field="id",
            model=migrator.orm["user"],
            null=True,
            on_delete="CASCADE",
        )
        created_at = pw.DateTimeField()
        state_since = pw.DateTimeField()
        last_seen_at = pw.DateTimeField()
        data = pw.TextField(default="{}")
        next_url = pw.TextField(null=True)
        pending_secret_encrypted = pw.TextField(null=True)
        second_factor_at = pw.DateTimeField(null=True)
        ip = pw.CharField(max_length=64, null=True)
        user_agent = pw.CharField(max_length=255, null=True)
        step_up_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "web_session"
            legacy_table_names = False  # index names from the table name, as the models


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop them (every row is lost: only for a database that holds nothing)."""

    migrator.remove_model("web_session")

    migrator.remove_model("setting")

    migrator.remove_model("remembered_device")

    migrator.remove_model("totp_credential")

    migrator.remove_model("recovery_code")

    migrator.remove_model("password_throttle")

    migrator.remove_model("mfa_throttle")

    migrator.remove_model("audit_event")

    migrator.remove_model("api_token")

    migrator.remove_model("user")
