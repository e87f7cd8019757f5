"""bench/arena_votes.py works end to end: a short, slow run on the real services loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_votes_bench_counts_every_answered_vote_once(
    postgres_and_redis: None, tmp_path: Path
) -> None:
    report_file = tmp_path / "votes.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "arena_votes.py"),
            "--scenario",
            "both",
            "--rate",
            "40",
            "--duration",
            "3",
            "--warmup",
            "0.5",
            "--connections",
            "4",
            "--workers",
            "1",
            "--database-url",
            os.environ["DATABASE_URL"],
            "--bench-database",
            "ladder_bench_smoke",
            "--redis-url",
            os.environ["REDIS_URL"],
            "--json",
            str(report_file),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    reports = {report["scenario"]: report for report in json.loads(report_file.read_text())}
    assert set(reports) == {"postgres", "sqlite"}
    for report in reports.values():
        assert report["sent"] == 120 and report["statuses"] == {"201": 120}
        assert report["nothing_lost_or_doubled"]
        assert report["db"]["votes"] == 120 + report["warmup_2xx"]
        assert report["transport_errors"] == 0
    assert reports["postgres"]["rate_limits"] is True
    assert "| postgres | 40/s |" in result.stdout  # the summary table
