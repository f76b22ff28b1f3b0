"""The benchmark (`make bench`) with tiny numbers, so it cannot rot: gunicorn really
serves the app and the bare-Flask floor, wrk really drives every phase (bench/wrk.lua
judging each answer), every phase signs people in or passes the gateway without an
error, each pending login is used exactly once, and the JSON report has every field
docs/development/performance.md is read from.

On PostgreSQL when TEST_DATABASE_URL names one (the benchmark wipes its tables, as the
suite's own fixtures do), else on a new SQLite file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import ROOT as REPO

from bench.run import LOGIN_FORMS, PHASES  # every phase the bench has

pytestmark = pytest.mark.server

USERS = (60, 120)
CLIENTS = (3,)
PENDING = 25  # pending logins per code phase
PHASE_FIELDS = {
    "phase", "clients", "duration_s", "requests", "ok", "errors", "error_examples",
    "ran_out", "rps", "p50_ms", "p95_ms", "p99_ms", "generator_cpu_pct", "server_cpu_pct",
    "server_cpu_ms_per_op", "database_cpu_ms_per_op",
}  # fmt: skip


def run_bench(output: Path, *arguments: str) -> dict:
    command = [
        sys.executable, "-m", "bench.run", *arguments,
        "--pending", str(PENDING),
        "--hash-checks", "1",
        "--output", str(output),
    ]  # fmt: skip
    if os.environ.get("TEST_DATABASE_URL"):
        command += ["--database-url", os.environ["TEST_DATABASE_URL"]]
    finished = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "Targets (reported, not asserted):" in finished.stdout
    return json.loads(output.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_bench(
        tmp_path_factory.mktemp("bench") / "report.json",
        "--users", ",".join(map(str, USERS)),
        "--clients", ",".join(map(str, CLIENTS)),
        "--duration", "1",
    )  # fmt: skip


def test_bench_signs_in_without_errors_in_every_phase(report):
    phases = [phase for each in report["passes"] for phase in each["phases"]]
    assert len(phases) == len(USERS) * len(CLIENTS) * len(PHASES)
    for phase in phases:
        assert phase["errors"] == 0, phase
        assert phase["ok"] > 0, phase
        assert phase["server_cpu_ms_per_op"] > 0, phase


def sent_once_each(phase: dict, made: int) -> None:
    """Each prepared request was sent once and signed in: a repeat would be refused
    (a code or a challenge is single-use), an error. The phase ends when they are used
    up, or when its second is over first (a loaded machine: `make test` runs four
    test processes)."""
    assert phase["errors"] == 0 and phase["ok"] > 0, phase
    assert phase["ok"] == made if phase["ran_out"] else phase["ok"] < made, phase


def test_bench_uses_each_pending_login_once(report):
    """wrk sends each prepared code once; the phase ends when they are used up."""
    codes = [p for each in report["passes"] for p in each["phases"] if p["phase"] == "code"]
    assert codes
    for phase in codes:
        sent_once_each(phase, PENDING)
        assert phase["requests"] >= phase["ok"]  # and the idle pings of the last connections


def test_bench_sends_each_passkey_assertion_once(report):
    """Each challenge is single-use: every assertion is sent once, and each signs in."""
    made = -(-PENDING // LOGIN_FORMS) * LOGIN_FORMS
    for each in report["passes"]:
        for phase in each["phases"]:
            if phase["phase"] == "passkey":
                sent_once_each(phase, made)


def test_bench_report_has_every_field(report):
    meta = report["meta"]
    assert meta["workers"] == 2 and meta["clients"] == list(CLIENTS)
    assert report["password_hash"]["method"] == "scrypt"
    assert report["password_hash"]["check_ms"] > 0
    assert report["password_hash"]["check_cpu_ms"] > 0
    assert report["password_hash"]["bound_rps"] > 0
    assert [each["users"] for each in report["passes"]] == list(USERS)
    for each in report["passes"]:
        assert [(p["phase"], p["clients"]) for p in each["phases"]] == [
            (name, clients) for clients in CLIENTS for name in PHASES
        ]
        for phase in each["phases"]:
            password = {"hash_check_ms", "hash_check_cpu_ms", "bound_rps"}
            extra = password if phase["phase"] == "password" else set()
            assert set(phase) == PHASE_FIELDS | extra
            if meta["engine"] != "postgresql" or phase["phase"] == "floor":
                assert phase["database_cpu_ms_per_op"] is None
            elif phase["phase"] in ("gateway", "apppw", "code", "passkey", "userinfo", "token"):
                assert phase["database_cpu_ms_per_op"] > 0
            assert phase["p50_ms"] <= phase["p95_ms"] <= phase["p99_ms"]
        assert (
            set(each["code_vs_baseline"])
            == set(each["password_vs_bound"])
            == {str(c) for c in CLIENTS}
        )
        rss = each["peak_rss_mb"]
        assert len(rss["workers"]) == 2 and all(mb > 0 for mb in rss["workers"])
        resident = each["rss_mb"]["workers"]
        assert all(0 < now <= peak for now, peak in zip(resident, rss["workers"], strict=True))
        assert set(each["vs_floor"]) == set(PHASES) - {"floor"}
        for ratios in each["vs_floor"].values():
            assert set(ratios) == {str(c) for c in CLIENTS}
            assert all(ratio > 0 for ratio in ratios.values())
    assert meta["pool"] is True  # pooled connections are the default
    floor_rss = report["floor_peak_rss_mb"]["workers"]
    assert len(floor_rss) == 2 and all(mb > 0 for mb in floor_rss)
    names = [target["target"] for target in report["targets"]]
    assert len(names) == 14 * len(USERS) + 2  # fourteen per pass, two comparing the passes
    # baseline, gateway, propfind, apppw, code, passkey, userinfo, token
    assert sum("/ floor" in name for name in names) == 8 * len(USERS)
    assert report["meta"]["generator"].startswith("wrk")
    assert all(isinstance(target["pass"], bool) for target in report["targets"])


def test_bench_runs_only_the_phases_asked_for(tmp_path):
    """`make bench BENCH_ARGS="--clients 2 --seconds 1 --phases floor,code --no-pool"`:
    a quick look at one phase against the floor."""
    quick = run_bench(
        tmp_path / "quick.json",
        "--users", "30", "--clients", "2", "--seconds", "1", "--phases", "code,floor",
        "--no-pool",
    )  # fmt: skip
    assert quick["meta"]["pool"] is False
    (each,) = quick["passes"]
    assert [(p["phase"], p["clients"]) for p in each["phases"]] == [("floor", 2), ("code", 2)]
    assert all(p["errors"] == 0 and p["ok"] > 0 for p in each["phases"])
    assert set(each["vs_floor"]) == {"code"}
    assert [t["target"].split(" at ")[0] for t in quick["targets"]] == [
        "errors",
        "code step / floor req/s",
        "code step p99 / p50",
        "peak RSS per worker (MB), 30 users",
    ]


def test_statements_measures_every_step():
    """`python -m bench.statements`: each step runs (its own asserts check where it
    lands) and is counted, statements and commits."""
    from bench.statements import STEPS

    finished = subprocess.run(
        [sys.executable, "-m", "bench.statements", "--steps", "10"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    for step in STEPS:
        assert f"\n{step}: " in finished.stdout, finished.stdout
    # The hot steps write in one transaction each.
    for part in ("POST /mfa/verify", "POST /login/passkey", "POST /token"):
        (line,) = [line for line in finished.stdout.splitlines() if f"{part}: " in line]
        assert line.endswith(" ms") and ", 1 commits," in line, line
