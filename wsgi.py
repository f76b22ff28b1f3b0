"""WSGI entry point: `gunicorn wsgi:app`."""

from standalone_mfa import create_app
from standalone_mfa.web.errors import check_schema_at_start

app = create_app()
check_schema_at_start(app)  # one log line at start if the schema does not match (SC-38)
