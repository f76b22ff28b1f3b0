"""The audit trail: one row per security event, and the same event as one JSON log
line. Callers pass fixed words only (event, outcome, detail); never a secret, code,
password, token or cookie."""

from __future__ import annotations

import json
import logging

from flask import has_request_context, request

from .clock import now
from .models import AuditEvent

logger = logging.getLogger("standalone_mfa.audit")


def record(event: str, outcome: str, *, user=None, username=None, actor=None, detail=None):
    name = username or (user.username if user is not None else None)
    ip = request.remote_addr if has_request_context() else None
    at = now()
    AuditEvent.create(
        at=at, event=event, outcome=outcome, username=name, actor=actor, ip=ip, detail=detail
    )
    logger.info(
        json.dumps(
            {
                "at": at.isoformat() + "Z",
                "event": event,
                "outcome": outcome,
                "user": name,
                "actor": actor,
                "ip": ip,
                "detail": detail,
            }
        )
    )
