"""`make bench`: serve the app with gunicorn on a fresh seeded database, drive complete
sign-ins at several concurrency levels, print a table and the targets, write JSON.

One pass per user count (default 5,000 then 100,000), each on a new database and a
new server: at every concurrency level the floor (a bare Flask app, `bench/floor.py`,
served by its own gunicorn with the same settings for the whole run), the baseline (a
trivial route of the real app), the gateway check (GET /auth/nginx with a signed-in
session's cookie), the password step (GET + POST /login) and the code step (POST
/mfa/verify on pending logins).

    python -m bench.run [--users 5000,100000] [--clients 16,64] [--seconds 10]
                        [--phases floor,baseline,gateway,password,code] [--workers 2]
                        [--threads 1] [--database-url URL] [--no-pool] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from standalone_mfa import create_app
from standalone_mfa.core.config import DEFAULTS
from standalone_mfa.core.crypto import generate_key
from standalone_mfa.core.db import db

from . import load, seed

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
STEP_SECONDS = 30
SERVER_START_TIMEOUT = 60

PHASES = ("floor", "baseline", "gateway", "password", "code")

# Targets: reported, never asserted (a busy machine must not fail a build).
BASELINE_VS_FLOOR_MIN = 0.7
CODE_VS_FLOOR_MIN = {"sqlite": 0.25, "postgresql": 0.15}  # by engine
PEAK_RSS_MB_MAX = 80  # per worker
CODE_VS_BASELINE_MIN = 0.5
GATEWAY_VS_FLOOR_MIN = 0.5  # GET /auth/nginx with a signed-in cookie
GATEWAY_P99_OVER_P50_MAX = 10
# The gateway phase's rules: one_factor on the host the checks ask about.
BENCH_HOST = "app.bench.test"
BENCH_RULES = {
    "default_policy": "deny",
    "rules": [{"domain": "*.bench.test", "policy": "one_factor"}],
}
BENCH_PORTAL = "http://auth.bench.test"
CODE_P99_OVER_P50_MAX = 10
PASSWORD_VS_BOUND_MIN = 0.8
P50_GROWTH_MAX = 1.2
# Above this share of its one core, the (single-threaded) generator may be what limits.
GENERATOR_BUSY_PCT = 80


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A TERM (or an INT that a background job ignores otherwise) unwinds normally, so
    # gunicorn is stopped and the temporary files go.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    keys = {
        # Prefixed so that FLASK_SECRET_KEY can never parse as JSON (a number).
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
        "MFA_ENCRYPTION_KEYS": [generate_key()],
    }
    workdir = Path(tempfile.mkdtemp(prefix="smfa-bench-"))
    load_at_start = os.getloadavg()
    engine = _engine(args.database_url)
    floor = None
    try:
        with contextlib.ExitStack() as stack:
            if "floor" in args.phases:
                floor = stack.enter_context(
                    serve(args, {}, workdir, workdir / "gunicorn-floor.log", "bench.floor:app")
                )
            passes = [run_pass(args, keys, workdir, count, floor) for count in args.users]
            floor_rss = floor.peak_rss_mb() if floor else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = {
        "meta": {
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "engine": engine,
            "pool": args.pool,
            "phases": args.phases,
            "server": f"gunicorn, {args.workers} workers x {args.threads} threads",
            "workers": args.workers,
            "threads": args.threads,
            "clients": args.clients,
            "duration_s": args.duration,
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),  # at the end of the run
            "load_average_at_start": load_at_start,
            "python": platform.python_version(),
            "generator": "asyncio + aiohttp, one process",
        },
        "password_hash": password_hash_summary(args, passes),
        "floor_peak_rss_mb": floor_rss,
        "passes": passes,
    }
    report["targets"] = targets(report)
    print_report(report)
    output = Path(args.output) if args.output else default_output(engine, args.pool)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {output}")
    return 0


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--users",
        type=_int_list,
        default=_int_list(os.environ.get("BENCH_USERS", "5000,100000")),
        help="user counts, one pass each (env BENCH_USERS; default 5000,100000)",
    )
    parser.add_argument("--clients", type=_int_list, default=[1, 16, 64])
    parser.add_argument(
        "--duration", "--seconds", dest="duration", type=float, default=10.0,
        help="seconds per phase",
    )  # fmt: skip
    parser.add_argument(
        "--phases",
        type=_phase_list,
        default=list(PHASES),
        help="which phases to measure, in this order (default: " + ",".join(PHASES) + ")",
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", 2)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 1)))
    parser.add_argument(
        "--database-url",
        help="a server database to WIPE and use (default: a new SQLite file per pass)",
    )
    parser.add_argument(
        "--no-pool",
        dest="pool",
        action="store_false",
        help="a new database connection per request (DATABASE_POOL = False)",
    )
    parser.add_argument(
        "--pending",
        type=int,
        default=5000,
        help="most pending logins prepared for one code-step phase",
    )
    parser.add_argument(
        "--hash-checks", type=int, default=5, help="password hash checks timed per phase"
    )
    parser.add_argument("--output", help="JSON file (default: bench/results/…)")
    return parser.parse_args(argv)


def _int_list(text: str) -> list[int]:
    return [int(part) for part in str(text).split(",") if part.strip()]


def _phase_list(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(PHASES)}; not {unknown}")
    return [name for name in PHASES if name in chosen]


def _engine(database_url: str | None) -> str:
    """sqlite or postgresql (whatever the URL's spelling: postgres://, +pool)."""
    if database_url is None:
        return "sqlite"
    scheme = database_url.split(":")[0].split("+")[0]
    return "postgresql" if scheme.startswith("postgres") else scheme


def default_output(engine: str, pool: bool) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS / f"bench-{engine}{'' if pool else '-nopool'}-{stamp}.json"


# --- one pass: a database, a server, every phase at every concurrency level ----------


def run_pass(args, keys: dict, workdir: Path, count: int, floor) -> dict:
    database_url = args.database_url or f"sqlite:///{workdir}/bench-{count}.sqlite3"
    config = {
        **keys,
        "DATABASE_URL": database_url,
        "DATABASE_POOL": args.pool,
        "ACCESS_CONTROL": BENCH_RULES,
        "GATEWAY_PORTAL_URL": BENCH_PORTAL,
    }
    app = create_app(config, str(workdir))
    with app.app_context():
        started = time.perf_counter()
        seed.fresh_database()
        users = seed.seed_users(count)
        seeding_s = time.perf_counter() - started
    print(f"\n{count} users seeded in {seeding_s:.1f} s; starting gunicorn", flush=True)
    print(HEADER, flush=True)
    log_path = workdir / f"gunicorn-{count}.log"
    with serve(args, config, workdir, log_path, "bench.wsgi:app") as server:
        phases = asyncio.run(drive(args, app, server, floor, users))
        rss = server.peak_rss_mb()
        rss_now = server.rss_mb()
    with app.app_context():
        db.close()
    if any(phase["errors"] for phase in phases):
        print(f"gunicorn log tail ({log_path}):\n" + _tail(log_path), file=sys.stderr)
    return {
        "users": count,
        "seeding_s": round(seeding_s, 1),
        "phases": phases,
        "peak_rss_mb": rss,
        "rss_mb": rss_now,  # resident at the end of the pass (peak: during a password hash)
        "password_vs_bound": {
            str(phase["clients"]): _ratio(phase["rps"], phase["bound_rps"])
            for phase in phases
            if phase["phase"] == "password"
        },
        "code_vs_baseline": _ratios(phases, "code", "baseline", args.clients),
        "vs_floor": {
            name: _ratios(phases, name, "floor", args.clients)
            for name in ("baseline", "gateway", "password", "code")
            if name in args.phases and "floor" in args.phases
        },
    }


def _ratios(phases, name: str, against: str, clients_list) -> dict:
    """req/s of phase `name` ÷ req/s of phase `against`, at each concurrency level
    where both were measured."""
    found = {}
    for clients in clients_list:
        top, bottom = _find(phases, name, clients), _find(phases, against, clients)
        if top and bottom:
            found[str(clients)] = _ratio(top["rps"], bottom["rps"])
    return found


async def drive(args, app, server, floor, users: list[seed.BenchUser]) -> list[dict]:
    rng = random.Random(len(users))  # noqa: S311 - which users, not secrets
    last_step: dict[int, int] = {}  # user id -> time step whose code was submitted
    phases = []
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    signed_in = []
    if "gateway" in args.phases:
        with app.app_context():
            signed_in = seed.seed_signed_in_sessions(users[: args.pending])
    for clients in args.clients:
        async with load.http_session(clients) as http:
            client = load.Client(server.url, http, cookie_name, seed.PASSWORD)
            floor_client = floor and load.Client(floor.url, http, cookie_name, seed.PASSWORD)
            if not phases:
                await warm_up(client, floor_client, users[0].username)

            def any_user():
                return rng.choice(users).username

            runs = {
                "floor": (floor, floor_client and floor_client.ping, lambda: None),
                "baseline": (server, client.ping, lambda: None),
                "gateway": (
                    server,
                    client.gateway_check,
                    lambda: rng.choice(signed_in),
                ),
                "password": (server, client.password_step, any_user),
            }
            for name in [name for name in args.phases if name in runs]:
                target, operation, jobs = runs[name]
                bound = {}
                if name == "password":
                    # Measured now, in this process, while the server is idle: the machine
                    # may be busier or quieter than at any other moment of the run.
                    with app.app_context():
                        check, check_cpu = seed.password_hash_seconds(args.hash_checks)
                    bound = {
                        "hash_check_ms": round(check * 1000, 2),
                        "hash_check_cpu_ms": round(check_cpu * 1000, 2),
                        "bound_rps": round(args.workers / check, 2),
                    }
                summary = await measure(target, name, clients, args.duration, operation, jobs)
                phases.append({**summary, **bound})
            if "code" not in args.phases:
                continue
            pending = await pending_logins(args, app, users, last_step, rng)
            jobs = load.CodeJobs(pending, last_step)
            summary = await measure(server, "code", clients, args.duration, client.code_step, jobs)
            summary["skipped"] = jobs.skipped
            phases.append(summary)
    return phases


async def warm_up(client: load.Client, floor_client, username: str) -> None:
    """A few requests first, so no phase pays for the workers' first imports."""
    for _ in range(10):
        await client.ping(None)
        if floor_client:
            await floor_client.ping(None)
    await client.password_step(username)


async def measure(server, name, clients, duration, operation, jobs) -> dict:
    cpu_before = server.cpu_seconds()
    result = await load.run_phase(name, clients, duration, operation, jobs)
    cpu = server.cpu_seconds() - cpu_before
    summary = result.summary()
    summary["server_cpu_pct"] = round(100 * cpu / result.duration_s, 1)
    # CPU the server spent per successful operation: what an operation costs, even when
    # other programs on the machine decide how much CPU the server gets.
    summary["server_cpu_ms_per_op"] = round(1000 * cpu / result.ok, 2) if result.ok else None
    line = _row(summary)
    print(line, flush=True)
    return summary


async def pending_logins(args, app, users, last_step, rng) -> list[seed.PendingLogin]:
    """Pending logins for one code-step phase, for users whose current step is unused.
    If too few are left this step (small user counts), wait for the next one."""
    wanted = min(len(users), args.pending)
    fresh = load.unused_this_step(users, last_step)
    if len(fresh) < wanted / 2:
        await asyncio.sleep(STEP_SECONDS - time.time() % STEP_SECONDS + 0.1)
        fresh = load.unused_this_step(users, last_step)
    chosen = rng.sample(fresh, min(wanted, len(fresh)))
    with app.app_context():
        return seed.seed_pending_logins(app, chosen)


def password_hash_summary(args, passes: list[dict]) -> dict:
    """The hash method and the median of every in-process check time of the run."""
    checks = [
        phase["hash_check_ms"]
        for each in passes
        for phase in each["phases"]
        if phase["phase"] == "password"
    ]
    if not checks:
        return {"method": current_method(), "check_ms": None, "check_cpu_ms": None}
    check_ms = statistics.median(checks)
    cpu_ms = statistics.median(
        phase["hash_check_cpu_ms"]
        for each in passes
        for phase in each["phases"]
        if phase["phase"] == "password"
    )
    return {
        "method": current_method(),
        "check_ms": round(check_ms, 2),
        "check_cpu_ms": round(cpu_ms, 2),
        "bound_rps": round(args.workers / (check_ms / 1000), 2),
    }


def current_method() -> str:
    """The production default's name (scrypt), without its parameters."""
    return DEFAULTS["PASSWORD_HASH_METHOD"].split(":")[0]


# --- the server ------------------------------------------------------------------------


class Server:
    def __init__(self, process: subprocess.Popen, url: str):
        self.process = process
        self.url = url

    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        master = self.process.pid
        return [master, *_children(master)]

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def peak_rss_mb(self) -> dict:
        """VmHWM (peak resident set) of the master and of each worker, in MB."""
        return self._memory("VmHWM:")

    def rss_mb(self) -> dict:
        """VmRSS (resident now) of the master and of each worker, in MB."""
        return self._memory("VmRSS:")

    def _memory(self, field: str) -> dict:
        return {
            "master": _status_mb(self.process.pid, field),
            "workers": [_status_mb(pid, field) for pid in _children(self.process.pid)],
        }


@contextlib.contextmanager
def serve(args, config: dict, workdir: Path, log_path: Path, app_name: str):
    """gunicorn on a socket this process bound to a free port, handed over by fd, so no
    other program can take the port in between."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    env = {**os.environ, "BENCH_INSTANCE_PATH": str(workdir)}
    if config:  # the product (the floor takes no configuration)
        env |= {
            "FLASK_SECRET_KEY": config["SECRET_KEY"],
            "FLASK_MFA_ENCRYPTION_KEYS": json.dumps(config["MFA_ENCRYPTION_KEYS"]),
            "FLASK_DATABASE_URL": config["DATABASE_URL"],
            "FLASK_DATABASE_POOL": json.dumps(config["DATABASE_POOL"]),
            "FLASK_ACCESS_CONTROL": json.dumps(config["ACCESS_CONTROL"]),
            "FLASK_GATEWAY_PORTAL_URL": config["GATEWAY_PORTAL_URL"],
        }
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(args.workers),
        "--threads", str(args.threads),
        "--bind", f"fd://{listener.fileno()}",
        "--backlog", "2048",
        "--timeout", "120",
        "--graceful-timeout", "10",
        app_name,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, cwd=REPO, env=env, stdout=log, stderr=log, pass_fds=[listener.fileno()]
        )
    listener.close()
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        _wait_until_up(server, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(server: Server, log_path: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{_tail(log_path)}")
        with (
            contextlib.suppress(OSError),
            opener.open(server.url + "/bench/ping", timeout=5) as response,
        ):
            if response.status == 200 and _children(server.process.pid):
                return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {SERVER_START_TIMEOUT} s")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if _stat_fields(int(entry.name))[1] == str(pid):
                    found.append(int(entry.name))
    return sorted(found)


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, … (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _status_mb(pid: int, field: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- the report ------------------------------------------------------------------------


def _find(phases: list[dict], name: str, clients: int) -> dict | None:
    return next((p for p in phases if p["phase"] == name and p["clients"] == clients), None)


def _ratio(numerator, denominator) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def targets(report: dict) -> list[dict]:
    """Each target with its measured value and PASS/MISS, at the highest concurrency.
    A target whose phases were not measured (`--phases`) is left out."""
    passes = report["passes"]
    meta = report["meta"]
    top = max(meta["clients"])
    code_vs_floor_min = CODE_VS_FLOOR_MIN.get(meta["engine"], CODE_VS_FLOOR_MIN["sqlite"])
    found = []

    def add(name, value, limit, ok):
        found.append({"target": name, "value": value, "limit": limit, "pass": bool(ok)})

    def at_least(name, value, limit):
        add(name, value, f">= {limit}", value is not None and value >= limit)

    def at_most(name, value, limit):
        add(name, value, f"<= {limit}", value is not None and value <= limit)

    for each in passes:
        users = each["users"]
        where = f"at {top} clients, {users} users"
        errors = sum(p["errors"] for p in each["phases"] if p["clients"] == top)
        add(f"errors {where}", errors, 0, errors == 0)
        vs_floor = each["vs_floor"]
        if "baseline" in vs_floor:
            at_least(
                f"baseline / floor req/s {where}", vs_floor["baseline"][str(top)],
                BASELINE_VS_FLOOR_MIN,
            )  # fmt: skip
        if "code" in vs_floor:
            at_least(
                f"code step / floor req/s {where}", vs_floor["code"][str(top)], code_vs_floor_min
            )
        if "gateway" in vs_floor:
            at_least(
                f"gateway check / floor req/s {where}", vs_floor["gateway"][str(top)],
                GATEWAY_VS_FLOOR_MIN,
            )  # fmt: skip
        gateway = _find(each["phases"], "gateway", top)
        if gateway:
            spread = _ratio(gateway["p99_ms"], gateway["p50_ms"])
            at_most(f"gateway check p99 / p50 {where}", spread, GATEWAY_P99_OVER_P50_MAX)
        if str(top) in each["code_vs_baseline"]:
            at_least(
                f"code step / baseline req/s {where}", each["code_vs_baseline"][str(top)],
                CODE_VS_BASELINE_MIN,
            )  # fmt: skip
        code = _find(each["phases"], "code", top)
        if code:
            spread = _ratio(code["p99_ms"], code["p50_ms"])
            at_most(f"code step p99 / p50 {where}", spread, CODE_P99_OVER_P50_MAX)
        if str(top) in each["password_vs_bound"]:
            at_least(
                f"password step / hash bound {where}", each["password_vs_bound"][str(top)],
                PASSWORD_VS_BOUND_MIN,
            )  # fmt: skip
        workers = [mb for mb in each["peak_rss_mb"]["workers"] if mb is not None]
        at_most(
            f"peak RSS per worker (MB), {users} users", max(workers, default=None),
            PEAK_RSS_MB_MAX,
        )  # fmt: skip
    if len(passes) > 1:
        small, large = passes[0], passes[-1]
        for name in ("code", "password"):
            if name not in meta["phases"]:
                continue
            growth = _ratio(
                _find(large["phases"], name, top)["p50_ms"],
                _find(small["phases"], name, top)["p50_ms"],
            )
            at_most(
                f"{name} step p50 at {large['users']} / at {small['users']} users, {top} clients",
                growth,
                P50_GROWTH_MAX,
            )
    return found


HEADER = (
    f"{'phase':<9} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
    f"{'errors':>6} {'gen CPU%':>8} {'srv CPU%':>8} {'srv ms/op':>9}"
)


def _row(p: dict) -> str:
    def ms(value):
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{p['phase']:<9} {p['clients']:>7} {p['rps']:>8.1f} {ms(p['p50_ms']):>8} "
        f"{ms(p['p95_ms']):>8} {ms(p['p99_ms']):>8} {p['errors']:>6} "
        f"{p['generator_cpu_pct']:>8.1f} {p['server_cpu_pct']:>8.1f} "
        f"{ms(p['server_cpu_ms_per_op']):>9}"
    )


def print_report(report: dict) -> None:
    meta, hashing = report["meta"], report["password_hash"]
    pooling = "pooled connections" if meta["pool"] else "a connection per request"
    print(f"\n=== Standalone MFA benchmark: {meta['engine']} ({pooling}), {meta['server']} ===")
    load_start, load_end = meta["load_average_at_start"], meta["load_average"]
    print(
        f"load average (1, 5, 15 min) at start {_loads(load_start)}, at end {_loads(load_end)}"
        f" on {meta['cpu_count']} CPUs"
    )
    if hashing["check_ms"] is not None:
        print(
            f"password hash ({hashing['method']}): {hashing['check_ms']:.1f} ms per check "
            f"({hashing['check_cpu_ms']:.1f} ms CPU); "
            f"bound {hashing['bound_rps']:.1f} password steps/s ({meta['workers']} workers)"
        )
    if report["floor_peak_rss_mb"]:
        rss = report["floor_peak_rss_mb"]
        print(f"floor (bare Flask) peak RSS MB: workers {rss['workers']}, master {rss['master']}")
    for each in report["passes"]:
        print(f"\n{each['users']} users (seeded in {each['seeding_s']} s)")
        print(HEADER)
        for phase in each["phases"]:
            print(_row(phase))
        for name, ratios in each["vs_floor"].items():
            print(f"{name} / floor req/s: {_by_clients(ratios)}")
        if each["code_vs_baseline"]:
            print(f"code step / baseline req/s: {_by_clients(each['code_vs_baseline'])}")
        if each["password_vs_bound"]:
            print(f"password step / hash bound: {_by_clients(each['password_vs_bound'])}")
        rss, now = each["peak_rss_mb"], each["rss_mb"]
        print(
            f"peak RSS MB: workers {rss['workers']}, master {rss['master']}; "
            f"resident at the end: workers {now['workers']}"
        )
        busiest = max(phase["generator_cpu_pct"] for phase in each["phases"])
        verdict = "not the bottleneck" if busiest < GENERATOR_BUSY_PCT else "MAY BE THE BOTTLENECK"
        print(f"load generator: at most {busiest}% of one core ({verdict})")
    print("\nTargets (reported, not asserted):")
    for target in report["targets"]:
        verdict = "PASS" if target["pass"] else "MISS"
        print(f"  {verdict}  {target['target']}: {target['value']} (target {target['limit']})")


def _by_clients(ratios: dict) -> str:
    return ", ".join(f"{clients} clients {ratio}" for clients, ratio in ratios.items())


def _loads(loads) -> str:
    return " ".join(f"{value:.2f}" for value in loads)


if __name__ == "__main__":
    sys.exit(main())
