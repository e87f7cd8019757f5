"""Synthetic arena votes in the public battle schema, and the ratings CLI run on an export."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from leaderboard.ratings import cli_arguments

ROOT = Path(__file__).resolve().parents[2]
STRENGTH = {"alpha": 1.6, "beta": 0.9, "gamma": 0.2, "delta": 0.0, "rare": 0.5}


def battles(
    n: int = 500, seed: int = 3, first_tstamp: float = 1_700_000_000
) -> list[dict[str, Any]]:
    """``n`` votes one second apart; every 100th has the rare model, every third is coding."""
    rng = random.Random(seed)
    common = ["alpha", "beta", "gamma", "delta"]
    records = []
    for i in range(n):
        a, b = rng.sample(common, 2) if i % 100 else ("rare", rng.choice(common))
        p = STRENGTH[a] / (STRENGTH[a] + STRENGTH[b] + 0.3) if STRENGTH[b] else 0.7
        roll = rng.random()
        winner = (
            "model_a"
            if roll < p
            else "tie"
            if roll < p + 0.1
            else "tie (bothbad)"
            if roll < p + 0.15
            else "model_b"
        )
        records.append(
            {
                "model_a": a,
                "model_b": b,
                "winner": winner,
                "tstamp": first_tstamp + i,
                "anony": True,
                "category": "coding" if i % 3 == 0 else "",
                "question_id": f"q{seed}-{i}",
            }
        )
    return records


def export_file(directory: Path) -> Path:
    """The arena's JSON Lines export of every vote, written under ``directory``."""
    from arena.dumps import export_lines

    path = directory / "battles.jsonl"
    path.write_text("".join(export_lines("jsonl")), encoding="utf-8")
    return path


def run_cli(path: Path, params: dict[str, Any], category: str = "", *extra: str) -> bytes:
    """stdout of ``python -m evalcore.ratings`` with a release's recorded parameters."""
    command = [sys.executable, "-m", "evalcore.ratings", str(path), "--no-progress"]
    completed = subprocess.run(
        [*command, *cli_arguments(params, category), *extra],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return completed.stdout
