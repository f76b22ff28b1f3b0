"""Infrastructure every other layer stands on: configuration, the clock, encryption,
the database and its tables, the audit trail. Nothing here knows about requests."""
