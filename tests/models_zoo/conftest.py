"""Shared fixtures for the model zoo tests: tiny random-init checkpoints, made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models_zoo.testing import make_tiny_causal_lm, make_tiny_checkpoint, make_tiny_llama


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny checkpoint directory per architecture (dense, longnet, llama, gpt2)."""
    root = tmp_path_factory.mktemp("tiny_checkpoints")
    return {
        arch: make_tiny_checkpoint(root / arch, arch=arch)
        for arch in ("dense", "longnet", "llama", "gpt2")
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 with a few-shot-shaped tokenizer (no BOS added)."""
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-gpt2"), positions=256)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer adds BOS and has a chat template."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), positions=256)


@pytest.fixture(scope="session")
def tiny_gqa_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with grouped-query attention (4 query heads over 2 key-value heads)."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-gqa-llama"), positions=256, kv_heads=2)


@pytest.fixture(scope="session")
def fewglue_dir() -> Path:
    """The shared FewGLUE folder; tests that read it skip in a clone without ../shared."""
    import os

    from evalcore.fewshot.data import DATA_DIR_ENV, DEFAULT_DATA_DIR

    path = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    if not (path / "RTE" / "val.jsonl").is_file():
        pytest.skip(f"FewGLUE data not found at {path}")
    return path


@pytest.fixture(autouse=True, scope="package")
def single_thread_torch() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster, and avoids OpenMP spin-waiting when the
    2-core test machine is shared with other processes (measured 60x slower at load 8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
