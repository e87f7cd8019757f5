"""Checkpoint files: HF-format directories (safetensors only), model cards and weight digests."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from evalcore.digests import files_digest

logger = logging.getLogger(__name__)

MODEL_CARD_FILENAME = "model_card.json"
MODEL_CARD_FORMAT_VERSION = 1
WEIGHT_SUFFIX = ".safetensors"
PICKLE_WEIGHT_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a leaderboard needs to know about how a checkpoint was made."""

    name: str
    architecture: str  # config model_type, e.g. "ladder_longnet"
    parameters: int  # unique parameters (tied embeddings counted once)
    training_tokens: int
    training_flops: float  # 6 * parameters * training_tokens (Kaplan et al. / Chinchilla)
    tokens_per_parameter: float
    optimizer: dict[str, Any]
    lr_schedule: dict[str, Any]
    precision: str
    steps: int
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # losses, timing, seeds

    @classmethod
    def for_training(cls, *, parameters: int, training_tokens: int, **fields: Any) -> ModelCard:
        """Build a card, deriving FLOPs (6·N·D) and tokens per parameter."""
        return cls(
            parameters=parameters,
            training_tokens=training_tokens,
            training_flops=6.0 * parameters * training_tokens,
            tokens_per_parameter=training_tokens / parameters if parameters else 0.0,
            **fields,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a format version."""
        return {"format_version": MODEL_CARD_FORMAT_VERSION, **dataclasses.asdict(self)}


def write_model_card(directory: Path, card: ModelCard) -> Path:
    """Write ``card`` to ``directory/model_card.json`` and return the path."""
    path = Path(directory) / MODEL_CARD_FILENAME
    path.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_model_card(directory: Path) -> dict[str, Any] | None:
    """The model card of ``directory`` as a dict, or ``None`` when it has none."""
    path = Path(directory) / MODEL_CARD_FILENAME
    if not path.is_file():
        return None
    card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return card


def save_checkpoint(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path, card: ModelCard
) -> Path:
    """Save weights (safetensors), config, tokenizer and model card into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    write_model_card(directory, card)
    logger.info("saved %s (%d parameters) to %s", card.name, card.parameters, directory)
    return directory


def weight_files(directory: Path) -> list[Path]:
    """The safetensors weight files of a checkpoint directory, sorted by name.

    Raises:
        ValueError: If it holds only pickled weights (never loaded) or no weights at all.
    """
    directory = Path(directory)
    files = sorted(directory.glob(f"*{WEIGHT_SUFFIX}"))
    if files:
        return files
    pickled = [name for name in PICKLE_WEIGHT_NAMES if (directory / name).exists()]
    if pickled:
        raise ValueError(
            f"{directory} holds only pickled weights {pickled}; convert them to safetensors "
            "(pickle can execute code on load and is refused)"
        )
    raise ValueError(f"{directory} holds no *.safetensors weight files")


def weights_digest(directory: Path) -> str:
    """SHA-256 over the names and bytes of the checkpoint's safetensors files
    (:func:`evalcore.digests.files_digest`; pickled-only directories are refused first)."""
    return files_digest(weight_files(directory))
