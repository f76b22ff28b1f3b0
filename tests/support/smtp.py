"""A real SMTP server for the notice tests (aiosmtpd on 127.0.0.1), which can also
refuse every message or hang, and the app configured to send through it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from support.servers import free_port

SENDER = "signin@example.com"


@dataclass
class Received:
    envelope_to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()

    @property
    def raw(self) -> str:
        return self.message.as_string()


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    mode: str = "accept"  # "accept", "refuse" (554 to every message) or "hang"
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server, session, envelope):
        if self.mode == "refuse":
            return "554 5.7.1 Refused by the test"
        if self.mode == "hang":
            await asyncio.sleep(3600)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.received.append(Received(list(envelope.rcpt_tos), message))
            self.arrived.notify_all()
        return "250 OK"


class SmtpServer:
    """Start, stop and restart on the same port; `wait_for(n)` the mails to arrive."""

    def __init__(self):
        self.port = free_port()
        self.handler = _Handler()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> SmtpServer:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def set_mode(self, mode: str) -> None:
        self.handler.mode = mode

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.handler.arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.handler.arrived.wait(left)
        return list(self.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.envelope_to]


def mail_config(server: SmtpServer, **overrides) -> dict:
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": server.port,
        "MAIL_DEFAULT_SENDER": SENDER,
        "MAIL_TIMEOUT": 2,
        "MAIL_SUPPRESS_SEND": False,  # Flask-Mail's default under TESTING is to drop mail
        **overrides,
    }
