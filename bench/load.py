"""The load generator: N concurrent clients (asyncio + aiohttp, one process) repeating
one operation until a deadline, recording each operation's latency and outcome.

One generator drives every phase, so the ratios compare like with like. Every request
opens a new connection (`force_close`): gunicorn's sync workers close after each
answer anyway, and a reused keep-alive connection that the server has just closed
would show up as a client-side error that the product did not cause. Cookies are
handled by hand: each operation is a new browser (or a given pending login), never a
cookie jar shared between clients.
"""

from __future__ import annotations

import asyncio
import html
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import pyotp

CSRF_RE = re.compile(r'name="csrf_token"[^>]*\bvalue="([^"]*)"')
REQUEST_TIMEOUT = 120  # seconds; a stuck request is an error, not a hang
MAX_ERROR_EXAMPLES = 5


class Refused(Exception):
    """The server answered, but not what a successful step answers."""


@dataclass
class PhaseResult:
    phase: str
    clients: int
    duration_s: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful operations
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    skipped: int = 0  # pending logins not sent: their user's time step was used already
    generator_cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def percentile_ms(self, fraction: float) -> float | None:
        """Nearest-rank percentile of the successful operations, in milliseconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(fraction * len(ordered)))
        return ordered[rank - 1] * 1000

    def summary(self) -> dict:
        seconds = self.duration_s or float("nan")
        return {
            "phase": self.phase,
            "clients": self.clients,
            "duration_s": round(self.duration_s, 3),
            "requests": self.ok + self.errors,
            "ok": self.ok,
            "errors": self.errors,
            "error_examples": self.error_examples,
            "skipped": self.skipped,
            "rps": round(self.ok / seconds, 2),
            "p50_ms": _round(self.percentile_ms(0.50)),
            "p95_ms": _round(self.percentile_ms(0.95)),
            "p99_ms": _round(self.percentile_ms(0.99)),
            # Of one core: 100 means the generator kept one CPU busy the whole phase.
            "generator_cpu_pct": round(100 * self.generator_cpu_s / seconds, 1),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class Client:
    """HTTP for one phase: the three operations the benchmark repeats."""

    def __init__(
        self, base_url: str, http: aiohttp.ClientSession, cookie_name: str, password: str
    ):
        self.base_url = base_url
        self.http = http
        self.cookie_name = cookie_name
        self.password = password

    async def ping(self, _job) -> None:
        """The baseline: the app's trivial route."""
        async with self.http.get(self.base_url + "/bench/ping", allow_redirects=False) as response:
            body = await response.read()
            if response.status != 200 or body != b"ok":
                raise Refused(f"ping: {response.status}")

    async def gateway_check(self, session_token: str) -> None:
        """nginx's auth_request subrequest for a signed-in browser: GET /auth/nginx with
        the original URL and the session cookie; allowed, it names the user."""
        headers = {
            "X-Original-URL": "http://app.bench.test/static/app.css",
            "X-Original-Method": "GET",
            "Cookie": f"{self.cookie_name}={session_token}",
        }
        async with self.http.get(
            self.base_url + "/auth/nginx", headers=headers, allow_redirects=False
        ) as response:
            await response.read()
            if response.status != 200 or not response.headers.get("Remote-User"):
                raise Refused(f"gateway check: {response.status}")

    async def password_step(self, username: str) -> None:
        """A new browser: GET /login (the cookie holding the CSRF secret, signed: an
        anonymous session has no row; and the form's token), then POST /login; a
        success lands on the code step."""
        async with self.http.get(self.base_url + "/login", allow_redirects=False) as response:
            page = await response.text()
            cookies = "; ".join(f"{name}={c.value}" for name, c in response.cookies.items())
            if response.status != 200 or not cookies:
                raise Refused(f"GET /login: {response.status}")
        found = CSRF_RE.search(page)
        if not found:
            raise Refused("GET /login: no CSRF field")
        form = {
            "csrf_token": html.unescape(found.group(1)),
            "username": username,
            "password": self.password,
        }
        await self._post_expecting("/login", cookies, form, "/mfa/verify")

    async def code_step(self, job) -> None:
        """POST /mfa/verify on a pending login with its code (see `CodeJobs`); a
        success lands on the home page."""
        pending, code = job
        form = {"csrf_token": pending.csrf_token, "code": code}
        cookies = f"{self.cookie_name}={pending.cookie}"
        await self._post_expecting("/mfa/verify", cookies, form, "/")

    async def _post_expecting(self, path: str, cookies: str, form: dict, landing: str) -> None:
        async with self.http.post(
            self.base_url + path,
            data=form,
            headers={"Cookie": cookies},
            allow_redirects=False,
        ) as response:
            await response.read()
            location = urlsplit(response.headers.get("Location", "")).path
            if response.status != 302 or location != landing:
                raise Refused(f"POST {path}: {response.status} -> {location or '-'}")


async def run_phase(
    phase: str,
    clients: int,
    duration: float,
    operation: Callable[[object], Awaitable[None]],
    next_job: Callable[[], object],
) -> PhaseResult:
    """`clients` loops, each doing `operation(next_job())` until the deadline or until
    `next_job` raises StopIteration (nothing left to do)."""
    result = PhaseResult(phase, clients, 0.0)
    deadline = time.perf_counter() + duration

    async def one_client():
        while time.perf_counter() < deadline:
            try:
                job = next_job()
            except StopIteration:
                return
            started = time.perf_counter()
            try:
                await operation(job)
            except (TimeoutError, Refused, aiohttp.ClientError) as exc:
                result.errors += 1
                if len(result.error_examples) < MAX_ERROR_EXAMPLES:
                    result.error_examples.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                result.latencies.append(time.perf_counter() - started)

    cpu_started, wall_started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    result.duration_s = time.perf_counter() - wall_started
    result.generator_cpu_s = time.process_time() - cpu_started
    return result


def http_session(clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients, force_close=True),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        auto_decompress=False,
    )


class CodeJobs:
    """Pending logins to submit with the code of the current time step, computed here
    (client-side) from the user's secret. Each pending login is used once, and a user
    never twice in one 30 s step: the server would rightly refuse that as a replay."""

    def __init__(self, pending, last_step: dict[int, int]):
        self.pending = deque(pending)
        self.last_step = last_step  # user id -> the time step last submitted for it
        self.skipped = 0

    def __call__(self):
        while self.pending:
            candidate = self.pending.popleft()
            otp = pyotp.TOTP(candidate.user.secret)
            step = otp.timecode(time.time())
            if self.last_step.get(candidate.user.id, -1) < step:
                self.last_step[candidate.user.id] = step
                return candidate, otp.generate_otp(step)
            self.skipped += 1
        raise StopIteration


def unused_this_step(users, last_step: dict[int, int]) -> list:
    """The users whose code for the current time step has not been submitted yet."""
    step = int(time.time()) // 30
    return [user for user in users if last_step.get(user.id, -1) < step]
