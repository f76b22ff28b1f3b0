"""`GET /metrics` for Prometheus, and the request timing behind its histogram.

Served only to `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time),
401 otherwise; while no token is configured the route is not even registered (404,
whatever the method).
Like the health check it has no session: no cookie is set, nothing is counted as a
sign-in, and it answers whatever the schema (SC-38 is visible in the other numbers).
"""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Response, abort, g, request

from ..core import metrics
from ..core.config import setting
from ..core.db import db
from ..core.metrics import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics", endpoint="metrics")
def metrics_view():
    """The metrics in Prometheus' text format, to the holder of METRICS_TOKEN."""
    expected = setting("METRICS_TOKEN")
    if not expected:
        abort(404)
    sent = request.headers.get("Authorization", "")
    scheme, _, token = sent.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), str(expected).encode()
    ):
        return Response(
            "A bearer token is needed.\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"},
        )
    body, content_type = exposition()
    return Response(body, 200, {"Content-Type": content_type})


def _started():
    g.metrics_started = time.perf_counter()


def _finished(_exc=None):
    started = g._get_current_object().pop("metrics_started", None)
    if started is not None:
        endpoint = request._get_current_object().endpoint
        metrics.request_finished(endpoint, time.perf_counter() - started)
    database = getattr(db, "obj", None)
    if database is not None and hasattr(database, "_in_use"):  # a pooled database
        metrics.pool_seen(len(database._in_use), database._max_connections)


def init_app(app) -> None:
    if setting("DATABASE_POOL", app):  # the pool's size is known from the start
        metrics.pool_seen(0, setting("DATABASE_POOL_SIZE", app))
    app.before_request(_started)
    app.teardown_request(_finished)
    if setting("METRICS_TOKEN", app):  # otherwise no such page, whatever the method
        app.register_blueprint(bp)
