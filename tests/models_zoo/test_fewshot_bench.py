"""bench/fewshot.py's GPU path (Llama preset, dtype, several k) runs on CPU too, and the
Llama builder it uses takes grouped-query attention, an MLP width, a device and a dtype."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from evalcore.fewshot.data import DATA_DIR_ENV, DEFAULT_DATA_DIR
from models_zoo.testing import make_tiny_llama

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "fewshot.py"


def test_make_tiny_llama_takes_kv_heads_mlp_width_and_dtype(tmp_path: Path) -> None:
    path = make_tiny_llama(
        tmp_path / "gqa", hidden=64, heads=4, kv_heads=2, intermediate=96, dtype=torch.bfloat16
    )
    config = json.loads((path / "config.json").read_text())
    assert (config["num_key_value_heads"], config["intermediate_size"]) == (2, 96)
    with safe_open(str(path / "model.safetensors"), "pt") as weights:
        dtypes = {weights.get_tensor(name).dtype for name in weights.keys()}  # noqa: SIM118
        assert dtypes == {torch.bfloat16}
        assert weights.get_tensor("model.layers.0.self_attn.k_proj.weight").shape == (32, 64)
    plain = json.loads((make_tiny_llama(tmp_path / "plain") / "config.json").read_text())
    assert (plain["num_key_value_heads"], plain["intermediate_size"]) == (4, 128)


def test_bench_llama_preset_in_bf16_over_several_shots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    if not (data_dir / "RTE" / "val.jsonl").is_file():
        pytest.skip(f"FewGLUE data not found at {data_dir}")
    spec = importlib.util.spec_from_file_location("fewshot_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "rows.json"
    argv = ["fewshot.py", "--model-preset", "llama-test", "--model-dir", str(tmp_path / "m")]
    argv += ["--dtype", "bfloat16", "--vocab-size", "400", "--data-dir", str(data_dir)]
    argv += ["--limit", "3", "--shots", "0,2", "--repeats", "1", "--skip-naive"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    bench.main()
    rows = json.loads(out.read_text())
    assert [row["shots"] for row in rows] == [0, 0, 0, 2, 2, 2]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["model_type"], config["num_key_value_heads"]) == ("llama", 2)
    for shots in (0, 2):
        invariant, tree, lm_eval = (row for row in rows if row["shots"] == shots)
        assert lm_eval["note"].startswith("skipped")
        assert invariant["accuracy"] == tree["accuracy"]
        for row in (invariant, tree):
            assert (row["dtype"], row["device"], row["model_preset"]) == (
                "bfloat16",
                "cpu",
                "llama-test",
            )
            assert row["requests"] == 6 and row["scored_tokens"] >= 6
            assert row["requests_per_s"] > 0 and row["scored_tokens_per_s"] > 0
            assert 0 <= row["prefix_saved_share"] < 1
    assert rows[0]["prefix_saved_share"] > 0.3  # k = 0: the two choices share one context
