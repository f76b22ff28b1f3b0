"""The schema's history: one peewee-migrate file per change, applied in name order by
`flask --app standalone_mfa db upgrade` (see `ops.schema`, and "How to add a migration"
in docs/development/architecture.md). A file, once released, never changes: a new
change is a new file.

`001_first_release` is exactly the schema of the first release (commit 71f8405);
002 and 003 are what later releases added with `init-db`. Databases made by those
releases have no history table: `ops.schema` recognises their tables and records
these migrations as applied without running them."""
