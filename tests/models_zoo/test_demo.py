"""Demo contestants: trained once, reused when complete, redone when interrupted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from models_zoo import demo, serving
from models_zoo.demo import COMPLETE_MARKER, DEMO_SPECS, DemoSpec, ensure_demo_checkpoints

QUICK_SPECS = (DemoSpec(name="quick-dense", arch="dense", steps=2),)


def test_default_demo_set_has_three_distinct_contestants() -> None:
    assert len({spec.name for spec in DEMO_SPECS}) >= 3
    assert len({(spec.arch, spec.steps) for spec in DEMO_SPECS}) == len(DEMO_SPECS)


def test_checkpoints_are_trained_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [first] = ensure_demo_checkpoints(tmp_path, progress=False, specs=QUICK_SPECS)
    assert (first.path / COMPLETE_MARKER).is_file() and first.card["steps"] == 2
    assert serving.load(first.path, device="cpu").generate(["The"], max_new_tokens=2)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete checkpoint must not be retrained")

    monkeypatch.setattr(demo, "train", refuse)
    [again] = ensure_demo_checkpoints(tmp_path, progress=False, specs=QUICK_SPECS)
    assert again == first


def test_interrupted_run_without_marker_is_redone(tmp_path: Path) -> None:
    stale = tmp_path / "quick-dense"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half-written")
    [checkpoint] = ensure_demo_checkpoints(tmp_path, progress=False, specs=QUICK_SPECS)
    assert (checkpoint.path / COMPLETE_MARKER).is_file()
    assert serving.load(checkpoint.path, device="cpu").num_parameters > 0


@pytest.mark.slow
def test_full_demo_set_trains_within_five_minutes_with_quality_order(tmp_path: Path) -> None:
    started = time.perf_counter()
    checkpoints = ensure_demo_checkpoints(tmp_path, progress=False)
    assert time.perf_counter() - started < 300
    losses = {c.name: c.card["extra"]["validation_loss"] for c in checkpoints}
    assert losses["dense-tiny-short"] > max(losses["dense-tiny"], losses["longnet-tiny"]) + 0.3
