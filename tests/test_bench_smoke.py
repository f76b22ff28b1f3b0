"""The benchmark (`make bench`) with tiny numbers, so it cannot rot: gunicorn really
serves, every phase really signs people in without an error, and the JSON report has
every field the README's Performance section is read from.

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

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parent.parent
USERS = (60, 120)
CLIENTS = (3,)
PHASES = ("baseline", "password", "code")
PHASE_FIELDS = {
    "phase", "clients", "duration_s", "requests", "ok", "errors", "error_examples",
    "skipped", "rps", "p50_ms", "p95_ms", "p99_ms", "generator_cpu_pct", "server_cpu_pct",
    "server_cpu_ms_per_op",
}  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "report.json"
    command = [
        sys.executable, "-m", "bench.run",
        "--users", ",".join(map(str, USERS)),
        "--clients", ",".join(map(str, CLIENTS)),
        "--duration", "0.5",
        "--pending", "25",
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


def test_bench_signs_in_without_errors_in_every_phase(report):
    phases = [phase for each in report["passes"] for phase in each["phases"]]
    assert len(phases) == len(USERS) * len(CLIENTS) * len(PHASES)
    for phase in phases:
        assert phase["errors"] == 0, phase
        assert phase["ok"] > 0, phase
        assert phase["skipped"] == 0, phase


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
            assert phase["p50_ms"] <= phase["p95_ms"] <= phase["p99_ms"]
        assert (
            set(each["code_vs_baseline"])
            == set(each["password_vs_bound"])
            == {str(c) for c in CLIENTS}
        )
        rss = each["peak_rss_mb"]
        assert len(rss["workers"]) == 2 and all(mb > 0 for mb in rss["workers"])
    names = [target["target"] for target in report["targets"]]
    assert len(names) == 4 * len(USERS) + 2  # four per pass, two comparing the passes
    assert all(isinstance(target["pass"], bool) for target in report["targets"])
