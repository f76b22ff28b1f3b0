"""The floor of any Flask app: a bare Flask app, one route returning "ok", no
extensions, no database. `make bench` serves it with the same gunicorn settings as the
product, in the same run, so every figure can be read against what Flask itself costs
on this machine at this moment."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.route("/bench/ping")
def ping():
    """Answer "ok"."""
    return "ok"
