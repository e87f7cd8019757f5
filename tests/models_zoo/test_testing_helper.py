"""``make_tiny_checkpoint``: fast, deterministic, loadable for every supported architecture."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from models_zoo.checkpoint import weights_digest
from models_zoo.testing import make_tiny_checkpoint


@pytest.mark.parametrize("arch", ["dense", "longnet", "llama", "gpt2"])
def test_tiny_checkpoint_is_fast_complete_and_deterministic(arch: str, tmp_path: Path) -> None:
    make_tiny_checkpoint(tmp_path / "warm", arch=arch)  # first call trains the shared tokenizer
    started = time.perf_counter()
    path = make_tiny_checkpoint(tmp_path / "a", arch=arch, seed=3)
    assert time.perf_counter() - started < 2.0
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "model_card.json"} <= names
    assert json.loads((path / "model_card.json").read_text())["parameters"] > 0
    again = make_tiny_checkpoint(tmp_path / "b", arch=arch, seed=3)
    assert weights_digest(path) == weights_digest(again)
    assert weights_digest(path) != weights_digest(make_tiny_checkpoint(tmp_path / "c", arch, 4))


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="arch must be one of .* got 'rnn'"):
        make_tiny_checkpoint(tmp_path, arch="rnn")
