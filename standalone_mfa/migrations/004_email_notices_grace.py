"""004: people's addresses and preferences, the confirmation links for an address a
user sets themselves, the outbox of notices, and each user's MFA grace deadline."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add the user's columns; create `email_confirmation` and `notice`."""
    migrator.add_fields(
        "user",
        # The confirmed address notices go to (an administrator's, or one confirmed by
        # its link), and the one a user asked for, waiting for its link.
        email=pw.CharField(max_length=254, null=True),
        pending_email=pw.CharField(max_length=254, null=True),
        time_zone=pw.CharField(max_length=64, null=True),
        locale=pw.CharField(max_length=16, null=True),
        # MFA policy: when set-up was first required of this user, and until when they
        # may postpone it.
        mfa_required_since=pw.DateTimeField(null=True),
        mfa_deadline=pw.DateTimeField(null=True),
    )

    @migrator.create_model
    class EmailConfirmation(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        address = pw.CharField(max_length=254)
        token_hash = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField(index=True)
        used_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "email_confirmation"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class Notice(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id",
            field="id",
            model=migrator.orm["user"],
            null=True,
            on_delete="SET NULL",
        )
        to_address = pw.CharField(max_length=254)
        kind = pw.CharField(max_length=40, index=True)
        facts = pw.TextField(default="{}")
        created_at = pw.DateTimeField()
        next_attempt_at = pw.DateTimeField(index=True)
        attempts = pw.IntegerField(default=0)
        claimed_until = pw.DateTimeField(null=True)
        sent_at = pw.DateTimeField(null=True, index=True)
        last_error = pw.TextField(null=True)

        class Meta:
            table_name = "notice"
            legacy_table_names = False  # index names from the table name, as the models


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop them: addresses, pending notices and grace deadlines are lost."""
    migrator.remove_model("notice")
    migrator.remove_model("email_confirmation")
    migrator.remove_fields(
        "user",
        "email",
        "pending_email",
        "time_zone",
        "locale",
        "mfa_required_since",
        "mfa_deadline",
    )
