"""Sending what the outbox holds: never inside a request's transaction, never making
anyone wait for SMTP.

`send_due` does one round: claim each due notice, send it, mark it sent or give it
back with back-off. A request that queued a notice wakes this process's sender thread
after its response (`kick`); a CLI command that queued one sends it before it exits
(`flush`). `mail send --due` (cron) does a round for whatever is due; `mail send` by
hand tries every pending notice at once (`send_pending_now`), back-off or not."""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import socket
import threading
from dataclasses import dataclass

import flask_mail
from flask import Flask, current_app

from ..core import db, metrics
from ..core.clock import now
from . import mailer, outbox

logger = logging.getLogger("standalone_mfa.notices")
IDLE_WAKEUP = 60  # seconds: the thread also looks for retries that came due


@dataclass
class Round:
    sent: int = 0
    failed: int = 0


# What an SMTP attempt can fail with: the notice is retried later, never lost. (A
# header with a line break cannot come from our rows, whose address is checked again
# when the mail is made; if it ever did, it fails like the rest, audited.)
SEND_ERRORS = (smtplib.SMTPException, OSError, socket.timeout, flask_mail.BadHeaderError)


def send_due(limit: int = outbox.BATCH) -> Round:
    """One round over the due notices (inside an app context): the background
    sender's, which keeps each failed notice's back-off."""
    return _send(outbox.due_ids(now(), limit), at_once=False)


def send_pending_now() -> Round:
    """Try every pending notice once now, back-off or not (inside an app context): an
    operator's `mail send`, say just after fixing the SMTP server. One that fails
    again gets its next back-off; one another sender holds is left to it."""
    done, after = Round(), 0
    while ids := outbox.due_ids(now(), now=True, after=after):
        one = _send(ids, at_once=True)
        done.sent += one.sent
        done.failed += one.failed
        after = ids[-1]
    return done


def _send(ids: list[int], *, at_once: bool) -> Round:
    done = Round()
    if not ids:
        return done
    connection = None
    try:
        for notice_id in ids:
            notice = outbox.claim(notice_id, now(), now=at_once)
            if notice is None:
                continue  # another sender has it
            try:
                message = mailer.message_for(notice)
            except Exception as exc:  # a template or a key that no longer decrypts
                logger.exception("notice %s could not be rendered", notice.id)
                outbox.mark_failed(notice, now(), _describe(exc))
                metrics.notice("failed")
                done.failed += 1
                continue
            try:
                if connection is None:
                    connection = mailer.connect().__enter__()
                connection.send(message)
            except SEND_ERRORS as exc:
                connection = _drop(connection)
                outbox.mark_failed(notice, now(), _describe(exc))
                metrics.notice("failed")
                done.failed += 1
                continue
            outbox.mark_sent(notice, now())
            metrics.notice("sent")
            done.sent += 1
    finally:
        _drop(connection)
    return done


def _drop(connection):
    if connection is not None:
        with contextlib.suppress(*SEND_ERRORS):
            connection.__exit__(None, None, None)
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).replace("\r", " ").replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Thread:
    """This process's sender: a daemon thread started on the first kick (after a
    fork, again in the child), woken by each kick and once a minute."""

    def __init__(self):
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._app: Flask | None = None

    def kick(self, app: Flask) -> None:
        with self._lock:
            self._app = app
            self._idle.clear()
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="smfa-mail-sender", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def forget(self, app: Flask | None) -> None:
        """`app` (None: whichever) is gone: no more rounds until a kick names one."""
        with self._lock:
            if app is None or self._app is app:
                self._app = None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the thread has finished the rounds it was kicked for (tests)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(IDLE_WAKEUP)
            self._wake.clear()
            app = self._app
            if app is None:
                self._idle.set()
                continue
            try:
                with app.app_context():
                    try:
                        send_due()
                    finally:
                        db.close_connection()
            except Exception:  # the thread must outlive a database outage
                logger.exception("the mail sender's round failed; it will retry")
            if not self._wake.is_set():
                self._idle.set()


_thread = _Thread()


def kick(app: Flask | None = None) -> None:
    """Wake this process's sender (after a response that queued a notice)."""
    _thread.kick(app or current_app._get_current_object())


def forget(app: Flask | None = None) -> None:
    """Stop the sender's rounds for an app that is gone (None: whichever app it was
    last kicked for). One process runs one app in production; the tests build one per
    test, and a sender left with an old one would wake once a minute into the database
    of whatever test runs then, with the wrong keys (failing its notices)."""
    _thread.forget(app)


def wait_idle(timeout: float = 10) -> bool:
    return _thread.wait_idle(timeout)


def after_response(response):
    """Wake the sender if this request queued a notice: its transaction has committed
    and the response is on its way; the user never waits for SMTP."""
    if outbox.queued_since_asked():
        kick()
    return response


def flush_after_command(_exc=None) -> None:
    """At the end of an app context that queued a notice and was not a request (a CLI
    command): send what is due now, so an administrator's reset is told at once."""
    if not outbox.queued_since_asked():
        return
    try:
        send_due()
    except Exception:  # a teardown must not raise; `mail send` retries
        logger.exception("sending the notices of this command failed; `mail send` retries")
