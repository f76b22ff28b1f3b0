"""006: passkeys and security keys: each user's WebAuthn user handle, the credentials
(`webauthn_credential`) and the ceremonies' single-use challenges (`webauthn_challenge`).

Numbered after 005 (app passwords), which lands on its own: applied in name order."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add `user.webauthn_user_handle` (made at a user's first key); create the tables."""
    migrator.add_fields("user", webauthn_user_handle=pw.BlobField(null=True, unique=True))

    @migrator.create_model
    class WebAuthnCredential(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        credential_id = pw.BlobField(unique=True)
        public_key = pw.BlobField()
        sign_count = pw.BigIntegerField(default=0)
        aaguid = pw.CharField(max_length=36)
        transports = pw.CharField(max_length=255, default="")
        name = pw.CharField(max_length=64)
        kind = pw.CharField(max_length=16)
        backup_eligible = pw.BooleanField(default=False)
        backup_state = pw.BooleanField(default=False)
        rp_id = pw.CharField(max_length=253)
        user_verified = pw.BooleanField(default=False)
        fmt = pw.CharField(max_length=32, default="none")
        created_at = pw.DateTimeField()
        last_used_at = pw.DateTimeField(null=True)
        clone_warning_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "webauthn_credential"
            legacy_table_names = False  # index names from the table name, as the models
            indexes = [(("user", "name"), True)]

    @migrator.create_model
    class WebAuthnChallenge(pw.Model):
        id = pw.AutoField()
        binding = pw.CharField(max_length=64)
        purpose = pw.CharField(max_length=24)
        challenge = pw.BlobField()
        user = pw.ForeignKeyField(
            column_name="user_id",
            field="id",
            model=migrator.orm["user"],
            null=True,
            on_delete="CASCADE",
        )
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField(index=True)

        class Meta:
            table_name = "webauthn_challenge"
            legacy_table_names = False
            indexes = [(("binding", "purpose"), True)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop them: every passkey and security key is lost."""
    migrator.remove_model("webauthn_challenge")
    migrator.remove_model("webauthn_credential")
    migrator.remove_fields("user", "webauthn_user_handle")
