"""Demo contestants for ``make run``: small models of clearly different quality, trained here.

``ensure_demo_checkpoints(root)`` trains each one into ``root/<name>/`` unless a completed run is
already there (detected by a marker file written last, so an interrupted run is redone). On
2 CPU cores the whole set takes about a minute when the machine is otherwise idle, well
under the 5-minute budget.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from models_zoo.checkpoint import read_model_card
from models_zoo.markers import marker_matches, write_marker
from models_zoo.train import TrainSettings, train

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".ladder-demo-complete"


@dataclasses.dataclass(frozen=True)
class DemoSpec:
    """How one demo contestant is trained."""

    name: str
    arch: str
    steps: int
    optimizer: str = "adamw"
    preset: str = "tiny"
    seed: int = 0

    def settings(self, root: Path, progress: bool) -> TrainSettings:
        """Training settings that write into ``root/<name>``."""
        return TrainSettings(
            arch=self.arch,
            preset=self.preset,
            steps=self.steps,
            out=root / self.name,
            optimizer=self.optimizer,
            seed=self.seed,
            device="cpu",  # identical demo weights on every machine
            name=self.name,
            progress=progress,
        )


@dataclasses.dataclass(frozen=True)
class DemoCheckpoint:
    """A trained demo contestant."""

    name: str
    path: Path
    card: dict[str, Any]


# Same tiny size for all; quality differs through attention and training length.
DEMO_SPECS: tuple[DemoSpec, ...] = (
    DemoSpec(name="longnet-tiny", arch="longnet", steps=400),
    DemoSpec(name="dense-tiny", arch="dense", steps=400),
    DemoSpec(name="dense-tiny-short", arch="dense", steps=60),
)


def ensure_demo_checkpoints(
    root: Path, *, progress: bool = True, specs: tuple[DemoSpec, ...] = DEMO_SPECS
) -> list[DemoCheckpoint]:
    """Train the demo contestants that are missing under ``root`` and return all of them.

    Args:
        root: Cache directory, e.g. ``var/models``.
        progress: Show a progress bar per training run.
        specs: The contestants (the default set unless a test passes a smaller one).

    Returns:
        One :class:`DemoCheckpoint` per spec, in order.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    checkpoints = []
    for spec in specs:
        directory = root / spec.name
        if not _is_complete(directory, spec):
            if directory.exists():
                logger.info("discarding incomplete or outdated demo checkpoint %s", directory)
                shutil.rmtree(directory)
            logger.info(
                "training demo contestant %s (%s, %d steps)", spec.name, spec.arch, spec.steps
            )
            _train_single_threaded(spec.settings(root, progress))
            write_marker(directory / COMPLETE_MARKER, dataclasses.asdict(spec))
        card = read_model_card(directory)
        assert card is not None, f"{directory} has a completion marker but no model card"
        checkpoints.append(DemoCheckpoint(name=spec.name, path=directory, card=card))
    return checkpoints


def _train_single_threaded(settings: TrainSettings) -> None:
    """Train with one intra-op thread: ``make run`` starts the web server and a worker at the
    same time, and with the cores shared, OpenMP spin-waiting made 2-thread training of these
    tiny models many times slower (measured: 400 steps > 15 min at load 12 vs ~2 min)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(settings)
    finally:
        torch.set_num_threads(threads)


def _is_complete(directory: Path, spec: DemoSpec) -> bool:
    return marker_matches(directory / COMPLETE_MARKER, dataclasses.asdict(spec))
