"""The Prometheus metrics (prometheus-client), served by `GET /metrics` (web/metrics).

Every label value comes from a short fixed list checked here, never from a request: no
username, address, path or secret can become a label (SC-39), and the number of series
stays bounded. Under gunicorn each worker writes its numbers to files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, set up by
gunicorn.conf.py) and a scrape of any worker adds them up.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

SIGNIN_STEPS = (
    "password",
    "code",
    "recovery_code",
    "remembered_device",
    "security_key",
    "key_setup",
    "passkey",
)
SIGNIN_OUTCOMES = ("ok", "failed", "throttled", "replay", "locked")
GATEWAY_DECISIONS = ("allow", "deny", "sign_in", "challenge")
NOTICE_OUTCOMES = ("sent", "failed")
# Requests that matched no route (404s, scanners): one label, not their paths.
UNMATCHED = "unmatched"

SIGNIN = Counter(
    "smfa_signin",
    "Sign-in steps by outcome: ok, failed (wrong secret), throttled (refused unchecked "
    "during a back-off), replay (a code already used), locked (refused: account locked).",
    ["step", "outcome"],
)
GATEWAY_CHECKS = Counter(
    "smfa_gateway_checks",
    "Reverse-proxy gateway checks by decision: allow, deny, sign_in (sent to sign in), "
    "challenge (401 asking a non-browser client for an app password).",
    ["decision"],
)
NOTICES = Counter(
    "smfa_notices",
    "Attempts to mail a notice by outcome: sent, failed (retried later with back-off).",
    ["outcome"],
)
REQUEST_SECONDS = Histogram(
    "smfa_request_duration_seconds",
    "Time to answer a request, by Flask endpoint (the route's name, never its path).",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POOL_IN_USE = Gauge(
    "smfa_db_pool_connections_in_use",
    "Database connections borrowed from the pools, as each worker last saw at a request's end.",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "smfa_db_pool_connections_max",
    "Most database connections the pools may open (summed over live workers).",
    multiprocess_mode="livesum",
)

# Every series exists from the start (at 0), so a rate() or an alert sees it before
# its first event.
for _step in SIGNIN_STEPS:
    for _outcome in SIGNIN_OUTCOMES:
        SIGNIN.labels(_step, _outcome)
for _decision in GATEWAY_DECISIONS:
    GATEWAY_CHECKS.labels(_decision)
for _notice_outcome in NOTICE_OUTCOMES:
    NOTICES.labels(_notice_outcome)


def signin(step: str, outcome: str) -> None:
    """Count one sign-in step's outcome."""
    if step not in SIGNIN_STEPS or outcome not in SIGNIN_OUTCOMES:
        raise ValueError(f"not a sign-in metric: {step!r}, {outcome!r}")
    SIGNIN.labels(step, outcome).inc()


def gateway_check(decision: str) -> None:
    """Count one gateway decision (the gateway calls this for each check it answers)."""
    if decision not in GATEWAY_DECISIONS:
        raise ValueError(f"not a gateway decision: {decision!r}")
    GATEWAY_CHECKS.labels(decision).inc()


def notice(outcome: str) -> None:
    """Count one attempt to mail a notice (the sender calls this after each)."""
    if outcome not in NOTICE_OUTCOMES:
        raise ValueError(f"not a notice outcome: {outcome!r}")
    NOTICES.labels(outcome).inc()


_REQUEST_SECONDS_BY_ENDPOINT: dict = {}  # the histogram's child per endpoint, found once


def request_finished(endpoint: str | None, seconds: float) -> None:
    endpoint = endpoint or UNMATCHED
    child = _REQUEST_SECONDS_BY_ENDPOINT.get(endpoint)
    if child is None:  # endpoints are the app's route names: a short fixed list (SC-39)
        child = _REQUEST_SECONDS_BY_ENDPOINT[endpoint] = REQUEST_SECONDS.labels(endpoint)
    child.observe(seconds)


_last_pool = [None]  # (in use, size) last set by this process


def pool_seen(in_use: int, size: int) -> None:
    """The pool as a request leaves it; set only when it changed (every request of
    every protected app passes here)."""
    if _last_pool[0] == (in_use, size):
        return
    _last_pool[0] = (in_use, size)
    POOL_IN_USE.set(in_use)
    POOL_SIZE.set(size)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type: this process's,
    or (multiprocess mode) every worker's added up."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
