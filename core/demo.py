"""Demo set-up shared by ``setup_demo`` and the tests. Imports models_zoo lazily (worker side)."""

from __future__ import annotations

import json
from pathlib import Path

from contestants.models import Contestant

TINY_DEMO = (
    ("demo-longnet-tiny", "longnet"),
    ("demo-dense-tiny", "dense"),
    ("demo-llama-tiny", "llama"),
)


def _tiny_checkpoints(root: Path) -> list[tuple[str, Path, dict[str, object]]]:
    from models_zoo.testing import make_tiny_checkpoint

    made = []
    for seed, (name, arch) in enumerate(TINY_DEMO):
        path = root / "tiny" / name
        if not (path / "config.json").exists():
            make_tiny_checkpoint(path, arch=arch, seed=seed)
        card_file = path / "model_card.json"
        card = json.loads(card_file.read_text()) if card_file.exists() else {}
        made.append((name, path, card))
    return made


def _trained_checkpoints(root: Path) -> list[tuple[str, Path, dict[str, object]]]:
    from models_zoo.demo import ensure_demo_checkpoints

    return [(item.name, Path(item.path), dict(item.card)) for item in ensure_demo_checkpoints(root)]


def register_demo_contestants(root: Path, *, tiny: bool = False) -> list[str]:
    """Make sure the demo checkpoints exist and are registered as active contestants."""
    checkpoints = _tiny_checkpoints(root) if tiny else _trained_checkpoints(root)
    names = []
    for name, path, card in checkpoints:
        Contestant.objects.update_or_create(
            name=name,
            defaults={
                "organization": "Ladder demo",
                "license": "MIT",
                "checkpoint_path": str(path),
                "status": Contestant.Status.ACTIVE,
                "description": str(card.get("architecture", "")),
                "parameters": card.get("parameters"),
                "training_tokens": card.get("training_tokens"),
                "model_card": card,
            },
        )
        names.append(name)
    try:
        from arena.demo import load_demo_prompt_set
    except ImportError:
        pass
    else:
        load_demo_prompt_set()
    return names
