"""WSGI entry point: `gunicorn wsgi:app`."""

from standalone_mfa import create_app

app = create_app()
