"""`GET /healthz` for load balancers and process monitors: 200 when the database
answers with the schema this code expects, 503 when it does not (down, or not
upgraded: SC-38). No session, no sign-in: a probe never makes a row."""

from __future__ import annotations

import logging

import peewee
from flask import Blueprint, jsonify

from ..core.models import Setting
from .errors import schema_problem

bp = Blueprint("health", __name__)
logger = logging.getLogger("standalone_mfa")


@bp.get("/healthz")
def healthz():
    """Ping the database with a query on one of our tables; say whether it answered
    and whether its schema matches the code."""
    try:
        if schema_problem() is not None:
            return jsonify(status="unavailable", schema="mismatch"), 503
        # A real table, not `SELECT 1`: a database without our schema (init-db not run,
        # or an empty SQLite file in the wrong place) cannot serve a sign-in either.
        Setting.select(Setting.key).limit(1).execute()
    except peewee.DatabaseError as exc:
        logger.warning("health check: database unavailable: %s", type(exc).__name__)
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")
