"""002: trusted browsers keep their own password counter (SC-41), and a per-address
password back-off (SC-42): the two tables the release of sec12 (commit 30650cd) added."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Create `trusted_browser` and `address_throttle`."""

    @migrator.create_model
    class TrustedBrowser(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        token_hash = pw.CharField(max_length=64, unique=True)
        password_fingerprint = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()
        last_used_at = pw.DateTimeField()
        expires_at = pw.DateTimeField(index=True)
        failures = pw.IntegerField(default=0)
        last_failure_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "trusted_browser"
            legacy_table_names = False  # index names from the table name, as the models

    @migrator.create_model
    class AddressThrottle(pw.Model):
        key = pw.CharField(max_length=64, primary_key=True)
        window_started_at = pw.DateTimeField(index=True)
        failures = pw.IntegerField(default=0)
        last_failure_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "address_throttle"
            legacy_table_names = False  # index names from the table name, as the models


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop them: browsers lose their own counters, addresses their hour of failures."""
    migrator.remove_model("address_throttle")
    migrator.remove_model("trusted_browser")
