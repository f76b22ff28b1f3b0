"""007: how each browser session signed in (password, code, recovery code, remembered
device, security key, passkey), for the gateway's `phishing_resistant` rules and the
Account security page. Sessions signed in before keep None: nothing proven recorded."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add `web_session.signin_methods`."""
    migrator.add_fields("web_session", signin_methods=pw.CharField(max_length=120, null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop it: sessions signed in meanwhile no longer say how."""
    migrator.remove_fields("web_session", "signin_methods")
