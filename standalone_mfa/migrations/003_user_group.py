"""003: a user's named groups (`user_group`), for the gateway's `group:` subjects."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Create `user_group`, one row per (user, group name)."""

    @migrator.create_model
    class UserGroup(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        name = pw.CharField(max_length=64)

        class Meta:
            table_name = "user_group"
            legacy_table_names = False  # index names from the table name, as the models
            indexes = [(("user", "name"), True)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop it: every group membership is lost."""
    migrator.remove_model("user_group")
