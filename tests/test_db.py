"""core/db: `init-db` brings an older database up to date (the step-up column)."""

from __future__ import annotations

from conftest import PASSWORD
from helpers import cli, signed_in_root

# --- upgrading a database made before the step-up column


def test_init_db_adds_the_step_up_column_to_an_older_database(app, clock):
    from playhouse.migrate import SchemaMigrator, migrate

    from standalone_mfa.core.db import db

    with app.app_context():
        migrate(SchemaMigrator.from_database(db.obj).drop_column("web_session", "step_up_at"))
        assert "step_up_at" not in {c.name for c in db.get_columns("web_session")}
    assert cli(app, "init-db").exit_code == 0
    with app.app_context():
        assert "step_up_at" in {c.name for c in db.get_columns("web_session")}
    admin = signed_in_root(app, clock)
    admin.get("/admin/step-up")
    assert (
        admin.post("/admin/step-up", {"password": PASSWORD}).headers["Location"] == "/admin/users"
    )
    assert admin.get("/admin/users/alice/unlock").status_code == 200
