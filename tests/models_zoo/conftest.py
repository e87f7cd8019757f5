"""Shared fixtures for the model zoo tests: tiny random-init checkpoints, made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models_zoo.testing import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny checkpoint directory per architecture (dense, longnet, llama, gpt2)."""
    root = tmp_path_factory.mktemp("tiny_checkpoints")
    return {
        arch: make_tiny_checkpoint(root / arch, arch=arch)
        for arch in ("dense", "longnet", "llama", "gpt2")
    }


@pytest.fixture(autouse=True, scope="package")
def single_thread_torch() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster, and avoids OpenMP spin-waiting when the
    2-core test machine is shared with other processes (measured 60x slower at load 8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
