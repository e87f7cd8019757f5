"""bench/gpu_smoke.py runs on CPU too (the device machine runs it on CUDA)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_smoke.py"


def test_gpu_smoke_script_prints_a_table_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main(["--device", "cpu", "--steps", "0", "--max-new-tokens", "4"])
    output = capsys.readouterr().out
    assert status == 0
    for row in ("device", "tokens/s", "peak memory (MiB)", "sample"):
        assert f"| {row}" in output
