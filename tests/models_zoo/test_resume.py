"""An evaluation killed midway resumes from its request cache and gives the same document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evalcore.fewshot.cache import CachedLM, model_key

ROOT = Path(__file__).resolve().parents[2]
TASK = Path(__file__).parent / "fixtures" / "lm_eval_parity" / "parity_mc.yaml"


def command(model: Path, out: Path, cache: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "models_zoo.evaluate", "--model", str(model), "--out", str(out)]
    argv += ["--task-file", str(TASK), "--task-file", str(TASK.with_name("parity_ll.yaml"))]
    argv += ["--num-fewshot", "3", "--threads", "1", "--no-progress"]
    return argv + (["--cache-dir", str(cache), "--cache-flush", "2"] if cache else [])


def scores(document: dict[str, Any]) -> dict[str, Any]:
    return {name: block["metrics"] for name, block in document["tasks"].items()}


def test_a_killed_run_resumes_and_gives_the_uninterrupted_result(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cache = tmp_path / "cache"
    killed = subprocess.Popen(command(tiny_llama_dir, tmp_path / "a.json", cache), env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None:
        files = list(cache.glob("*.jsonl")) if cache.is_dir() else []
        if files and len(files[0].read_text().splitlines()) >= 4:
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert killed.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
    assert not (tmp_path / "a.json").exists()
    [file] = cache.glob("*.jsonl")
    done_before = len(file.read_text().splitlines())
    assert 4 <= done_before < 36  # 24 multiple-choice + 12 loglikelihood requests in all

    subprocess.run(command(tiny_llama_dir, tmp_path / "a.json", cache), env=env, check=True)
    subprocess.run(command(tiny_llama_dir, tmp_path / "b.json", None), env=env, check=True)
    resumed = json.loads((tmp_path / "a.json").read_text())
    fresh = json.loads((tmp_path / "b.json").read_text())
    assert scores(resumed) == scores(fresh)
    stats = resumed["provenance"]["scoring"]["cache"]
    assert stats["hits"] >= done_before - 2 and stats["hits"] + stats["misses"] == 36
    assert len(file.read_text().splitlines()) == 36


class Counting:
    digest = "sha256:x"
    scoring = {"special_tokens": "tokenizer"}

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]:
        self.seen += pairs
        return [-len(c) - len(x) / 3 for c, x in pairs]


def test_cache_keys_separate_models_and_settings_and_survive_a_cut_line(tmp_path: Path) -> None:
    inner = Counting()
    first = CachedLM(inner, tmp_path, flush_every=1)
    pairs = [("a", " b"), ("ab", " c"), ("a", " b")]
    assert first.loglikelihood(pairs) == inner.loglikelihood(pairs)[:3]
    inner.seen.clear()
    with first.path.open("a") as handle:
        handle.write('{"r": "cut')  # a kill in the middle of a write
    again = CachedLM(inner, tmp_path)
    expected = [-len(c) - len(x) / 3 for c, x in [*pairs, ("x", " y")]]
    assert again.loglikelihood([*pairs, ("x", " y")]) == expected
    assert inner.seen == [("x", " y")]
    other = Counting()
    other.scoring = {"special_tokens": "none"}
    assert model_key(other) != model_key(inner)
