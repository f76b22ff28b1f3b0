"""005: app passwords (`app_password`), the named secrets that calendars, sync clients
and scripts send to the gateway as Basic credentials."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Create `app_password`: one row per (user, name), the secret's SHA-256 unique."""

    @migrator.create_model
    class AppPassword(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        name = pw.CharField(max_length=64)
        secret_hash = pw.CharField(max_length=64, unique=True)
        two_factor = pw.BooleanField(default=False)
        created_at = pw.DateTimeField()
        last_used_at = pw.DateTimeField(null=True)
        last_used_ip = pw.CharField(max_length=64, null=True)
        revoked_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "app_password"
            legacy_table_names = False  # index names from the table name, as the models
            indexes = [(("user", "name"), True)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop it: every app password stops working."""
    migrator.remove_model("app_password")
