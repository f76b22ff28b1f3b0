"""The load generator: wrk (Debian's `wrk` package, C and epoll) driven by a Lua script
(`bench/wrk.lua`) that sends requests this module built beforehand.

wrk's Lua has no HMAC and no per-connection state for a two-request flow, so whatever
needs one is computed here first: the session cookies of signed-in browsers, the
anonymous cookie and CSRF token of the sign-in form (fetched from the server), the
pending logins and the TOTP code of each (one request each, sent once). The requests
go to a file; each wrk thread takes its share of the records, and the script checks
every answer (status, `Location`, `Remote-User`), so a phase counts successful
operations, not responses.

wrk was chosen because it is not the bottleneck: on the same bare Flask app (2 sync
gunicorn workers) an asyncio + aiohttp client opening a connection per request
reached about a third of wrk's rate, which made every ratio to that floor about three
times too kind. gunicorn's sync workers close the connection after each answer, and
wrk opens the next one, as a proxy in front of them would.
"""

from __future__ import annotations

import html
import json
import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

CSRF_RE = re.compile(r'name="csrf_token"[^>]*\bvalue="([^"]*)"')
LUA_SCRIPT = Path(__file__).with_name("wrk.lua")
REQUEST_TIMEOUT = "120s"  # a stuck request is an error, not a hang
WRK_THREADS = 2  # at most; wrk needs one connection per thread at least
RESULT_MARK = "BENCH-RESULT "
CHECKS = ("ping", "gateway", "login", "code", "userinfo", "token")


class GeneratorMissing(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise GeneratorMissing(
            "make bench needs wrk, the HTTP load generator (Debian: apt-get install wrk)"
        )
    return found


def http_request(
    method: str, path: str, host: str, headers: dict | None = None, body: bytes = b""
) -> bytes:
    """One raw HTTP/1.1 request, as wrk will send it."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def form_post(path: str, host: str, cookie: str, form: dict) -> bytes:
    """A browser's form POST from the portal's own page: the cookie, the form, and
    where it comes from as a browser says it (`Origin: null` under the portal's
    `Referrer-Policy: no-referrer`, and `Sec-Fetch-Site`; see web/cross_site.py)."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": cookie,
        "Origin": "null",
        "Sec-Fetch-Site": "same-origin",
    }
    return http_request("POST", path, host, headers, urlencode(form).encode())


def host_of(base_url: str) -> str:
    return urlsplit(base_url).netloc


@dataclass
class PhaseResult:
    phase: str
    clients: int
    duration_s: float
    ok: int = 0
    errors: int = 0  # wrong answers and socket errors (connect, read, write, timeout)
    responses: int = 0
    error_examples: list[str] = field(default_factory=list)
    percentiles_us: tuple[int, int, int] = (0, 0, 0)  # p50, p95, p99 of every response
    ran_out: bool = False  # every thread sent all its once-only records
    generator_cpu_s: float = 0.0

    def summary(self) -> dict:
        seconds = self.duration_s or float("nan")
        p50, p95, p99 = (round(us / 1000, 2) for us in self.percentiles_us)
        return {
            "phase": self.phase,
            "clients": self.clients,
            "duration_s": round(self.duration_s, 3),
            "requests": self.responses,
            "ok": self.ok,
            "errors": self.errors,
            "error_examples": self.error_examples,
            "ran_out": self.ran_out,
            "rps": round(self.ok / seconds, 2),
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            # Of one core: wrk's threads together (it may use up to WRK_THREADS cores).
            "generator_cpu_pct": round(100 * self.generator_cpu_s / seconds, 1),
        }


def run_phase(
    phase: str,
    base_url: str,
    clients: int,
    duration: float,
    requests: list[bytes],
    check: str,
    *,
    once: bool = False,
) -> PhaseResult:
    """wrk with `clients` connections for `duration` seconds (whole seconds, at least
    one) sending `requests` (cycled, or each once with `once`), each answer judged by
    `check` (see bench/wrk.lua)."""
    if check not in CHECKS:
        raise ValueError(check)
    # wrk gives each thread connections ÷ threads: a thread count that divides them.
    threads = max(1, min(WRK_THREADS, clients, len(requests) if once else clients))
    while clients % threads:
        threads -= 1
    with tempfile.NamedTemporaryFile("wb", prefix="smfa-wrk-", suffix=".bin") as records:
        for raw in requests:
            records.write(b"%d\n" % len(raw) + raw)
        records.flush()
        command = [
            wrk_binary(),
            "--threads", str(threads),
            "--connections", str(max(clients, threads)),
            "--duration", f"{max(1, round(duration))}s",
            "--timeout", REQUEST_TIMEOUT,
            "--script", str(LUA_SCRIPT),
            base_url + "/bench/ping",
            "--", records.name, check, str(threads), "once" if once else "cycle",
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        finished = subprocess.run(  # noqa: S603 - wrk and our own arguments
            command, capture_output=True, text=True, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(
        (text for text in finished.stdout.splitlines() if text.startswith(RESULT_MARK)), None
    )
    if finished.returncode != 0 or line is None:
        output = finished.stdout + finished.stderr
        raise RuntimeError(f"wrk failed ({finished.returncode}):\n{output}")
    found = json.loads(line[len(RESULT_MARK) :])
    generator_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return PhaseResult(
        phase,
        clients,
        found["seconds"],
        ok=found["ok"],
        errors=found["errors"] + found["socket_errors"],
        responses=found["responses"],
        error_examples=found["examples"]
        + ([f"{found['socket_errors']} socket errors"] if found["socket_errors"] else []),
        percentiles_us=(found["p50_us"], found["p95_us"], found["p99_us"]),
        ran_out=found["threads_exhausted"] == found["threads"],
        generator_cpu_s=generator_cpu,
    )


def login_form(base_url: str, opener) -> tuple[str, str]:
    """(cookie, CSRF token) of a new browser's sign-in page: GET /login on the server.
    The anonymous session lives in that signed cookie only, so one pair serves many
    POSTs, as a browser's would."""
    with opener.open(base_url + "/login", timeout=30) as response:
        page = response.read().decode()
        cookies = [
            value.split(";", 1)[0] for value in response.headers.get_all("Set-Cookie") or []
        ]
    found = CSRF_RE.search(page)
    if found is None or not cookies:
        raise RuntimeError("GET /login: no CSRF field or no cookie")
    return "; ".join(cookies), html.unescape(found.group(1))
