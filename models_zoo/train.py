"""Train a small zoo language model from scratch and save it as an HF-format checkpoint.

    python -m models_zoo.train --arch longnet --preset tiny --steps 300 --out var/models/x

Runs on CPU (and on a GPU when present, in bf16 autocast) with AdamW or block-wise 8-bit AdamW,
linear warm-up then cosine decay, a byte-level BPE tokenizer trained on the same corpus, and a
model card recording parameters, tokens, 6·N·D FLOPs, optimizer and schedule. Without
``--corpus`` it trains on the Python documentation topics shipped with the interpreter.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from models_zoo.baseline_transformer import DenseConfig, DenseForCausalLM
from models_zoo.checkpoint import ModelCard, save_checkpoint
from models_zoo.corpus import load_corpus
from models_zoo.decoder import DecoderForCausalLM
from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM
from models_zoo.optim import AdamW8bit, cosine_with_warmup
from models_zoo.progress import Progress
from models_zoo.tokenizer import train_tokenizer

logger = logging.getLogger(__name__)

ARCHITECTURES = ("longnet", "dense")
OPTIMIZERS = ("adamw", "adamw8bit")
VALIDATION_FRACTION = 0.05
VALIDATION_BATCHES = 8


@dataclasses.dataclass(frozen=True)
class Preset:
    """Model size and training shape of a named preset."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    seq_len: int
    batch_size: int
    lr: float
    warmup_steps: int
    segment_lengths: tuple[int, ...]  # LongNet only; geometric like the paper's schedule
    dilation_rates: tuple[int, ...]


PRESETS: dict[str, Preset] = {
    "tiny": Preset(512, 64, 2, 4, 172, 128, 16, 3e-3, 20, (16, 32, 64, 128), (1, 2, 4, 8)),
    "small": Preset(1024, 128, 4, 4, 344, 256, 16, 2e-3, 50, (32, 64, 128, 256), (1, 2, 4, 8)),
}


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Everything one training run depends on."""

    arch: str
    preset: str
    steps: int
    out: Path
    corpus: Path | None = None
    optimizer: str = "adamw"
    seed: int = 0
    device: str = "auto"
    name: str | None = None  # model card name; defaults to the output directory's name
    progress: bool = True
    weight_decay: float = 0.1
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak rate

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Where the checkpoint went, its card, and the per-step training losses."""

    path: Path
    card: ModelCard
    losses: list[float]


def build_model(
    arch: str, preset: Preset, tokenizer: PreTrainedTokenizerBase
) -> DecoderForCausalLM:
    """A freshly initialised zoo model of ``arch`` sized by ``preset`` (uses the global RNG)."""
    fields: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": preset.hidden_size,
        "num_hidden_layers": preset.num_hidden_layers,
        "num_attention_heads": preset.num_attention_heads,
        "intermediate_size": preset.intermediate_size,
        "max_position_embeddings": preset.seq_len,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "longnet":
        config = LongNetConfig(
            segment_lengths=list(preset.segment_lengths),
            dilation_rates=list(preset.dilation_rates),
            **fields,
        )
        return LongNetForCausalLM(config)
    return DenseForCausalLM(DenseConfig(**fields))


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def sample_windows(
    tokens: torch.Tensor, batch_size: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch_size`` random windows of ``length`` tokens from a 1-D token stream."""
    starts = torch.randint(0, tokens.numel() - length, (batch_size,), generator=generator)
    return torch.stack([tokens[start : start + length] for start in starts.tolist()])


def make_optimizer(
    name: str, model: torch.nn.Module, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW or 8-bit AdamW; matrices decay, vectors (norm gains) do not."""
    matrices = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": matrices, "weight_decay": weight_decay},
        {"params": vectors, "weight_decay": 0.0},
    ]
    if name == "adamw8bit":
        return AdamW8bit(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The tokenizer trained on the corpus and the corpus's tokens, split for training."""

    tokenizer: PreTrainedTokenizerBase
    train_tokens: torch.Tensor
    validation_tokens: torch.Tensor


def train(settings: TrainSettings) -> TrainResult:
    """Train one model as described by ``settings`` and save it to ``settings.out``.

    Returns:
        The checkpoint path, its model card and the training loss of every step.
    """
    preset = PRESETS[settings.preset]
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    data = prepare_data(settings.corpus, preset)

    model = build_model(settings.arch, preset, data.tokenizer)
    model.to(device)  # type: ignore[arg-type]
    optimizer = make_optimizer(settings.optimizer, model, preset.lr, settings.weight_decay)
    schedule = lr_schedule(settings, preset)
    started = time.perf_counter()
    losses = run_steps(model, optimizer, data.train_tokens, settings, schedule, device, generator)
    wall_time = time.perf_counter() - started
    model.eval()
    validation_loss = evaluate(model, data.validation_tokens, preset, device, settings.seed)

    card = training_card(
        settings, model, optimizer, schedule, losses, validation_loss, wall_time, device
    )
    save_checkpoint(model.cpu(), data.tokenizer, settings.out, card)
    return TrainResult(path=settings.out, card=card, losses=losses)


def prepare_data(corpus: Path | None, preset: Preset) -> TrainingData:
    """Train the tokenizer on the corpus, tokenize it and hold out its tail for validation.

    Raises:
        ValueError: when the held-out part is too short for one validation window.
    """
    text = load_corpus(corpus)
    tokenizer = train_tokenizer(text, preset.vocab_size)
    tokens = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    split = int(tokens.numel() * (1 - VALIDATION_FRACTION))
    train_tokens, validation_tokens = tokens[:split], tokens[split:]
    if validation_tokens.numel() <= preset.seq_len + 1:
        raise ValueError(f"corpus too small: {tokens.numel()} tokens for seq_len {preset.seq_len}")
    return TrainingData(tokenizer, train_tokens, validation_tokens)


def lr_schedule(settings: TrainSettings, preset: Preset) -> dict[str, Any]:
    """The learning-rate schedule of a run, as :func:`run_steps` follows it and the card records it."""
    return {
        "name": "linear_warmup_cosine",
        "peak_lr": preset.lr,
        "warmup_steps": min(preset.warmup_steps, settings.steps),
        "total_steps": settings.steps,
        "min_lr_ratio": settings.min_lr_ratio,
    }


def run_steps(
    model: DecoderForCausalLM,
    optimizer: torch.optim.Optimizer,
    train_tokens: torch.Tensor,
    settings: TrainSettings,
    schedule: dict[str, Any],
    device: torch.device,
    generator: torch.Generator,
) -> list[float]:
    """The optimisation loop: ``settings.steps`` steps on random windows; returns their losses."""
    preset = PRESETS[settings.preset]
    autocast = device.type == "cuda"
    losses: list[float] = []
    model.train()
    bar = Progress(
        range(settings.steps),
        description=f"training {settings.name or settings.out.name}",
        enabled=settings.progress,
    )
    for step in bar:
        factor = cosine_with_warmup(
            step,
            warmup_steps=schedule["warmup_steps"],
            total_steps=settings.steps,
            min_ratio=settings.min_lr_ratio,
        )
        for group in optimizer.param_groups:
            group["lr"] = preset.lr * factor
        batch = sample_windows(train_tokens, preset.batch_size, preset.seq_len + 1, generator)
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(batch, labels=batch, use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def training_card(
    settings: TrainSettings,
    model: DecoderForCausalLM,
    optimizer: torch.optim.Optimizer,
    schedule: dict[str, Any],
    losses: list[float],
    validation_loss: float,
    wall_time: float,
    device: torch.device,
) -> ModelCard:
    """The model card of a finished run: size, tokens, optimizer, schedule and its losses."""
    preset = PRESETS[settings.preset]
    return ModelCard.for_training(
        name=settings.name or settings.out.name,
        architecture=model.config.model_type,
        parameters=model.num_parameters(),
        training_tokens=settings.steps * preset.batch_size * preset.seq_len,
        optimizer=optimizer_description(settings, optimizer),
        lr_schedule=schedule,
        precision="bf16-autocast" if device.type == "cuda" else "fp32",
        steps=settings.steps,
        extra={
            "preset": settings.preset,
            "seed": settings.seed,
            "corpus": str(settings.corpus) if settings.corpus else "python-pydoc-topics",
            "seq_len": preset.seq_len,
            "batch_size": preset.batch_size,
            "final_train_loss": sum(losses[-10:]) / len(losses[-10:]),
            "validation_loss": validation_loss,
            "validation_perplexity": math.exp(min(validation_loss, 50.0)),
            "train_wall_time_s": round(wall_time, 2),
            "device": str(device),
        },
    )


@torch.no_grad()
def evaluate(
    model: DecoderForCausalLM, tokens: torch.Tensor, preset: Preset, device: torch.device, seed: int
) -> float:
    """Mean loss over fixed random windows of the held-out tokens."""
    generator = torch.Generator().manual_seed(seed + 1)
    total = 0.0
    for _ in range(VALIDATION_BATCHES):
        batch = sample_windows(tokens, preset.batch_size, preset.seq_len + 1, generator).to(device)
        total += float(model(batch, labels=batch, use_cache=False).loss)
    return total / VALIDATION_BATCHES


def optimizer_description(
    settings: TrainSettings, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """The optimizer's name and hyper-parameters for the model card."""
    group = optimizer.param_groups[0]
    description: dict[str, Any] = {
        "name": settings.optimizer,
        "betas": list(group["betas"]),
        "eps": group["eps"],
        "weight_decay": settings.weight_decay,
        "grad_clip_norm": 1.0,
    }
    if isinstance(optimizer, AdamW8bit):
        description.update(
            state_quantization="blockwise-dynamic-8bit",
            block_size=optimizer.block_size,
            min_8bit_size=optimizer.min_8bit_size,
        )
    return description


def parse_args(argv: Sequence[str] | None = None) -> TrainSettings:
    """Command-line arguments as :class:`TrainSettings`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=ARCHITECTURES, required=True)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="tiny")
    parser.add_argument("--corpus", type=Path, default=None, help="UTF-8 text file")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    return TrainSettings(
        arch=args.arch,
        preset=args.preset,
        steps=args.steps,
        out=args.out,
        corpus=args.corpus,
        optimizer=args.optimizer,
        seed=args.seed,
        device=args.device,
        name=args.name,
        progress=not args.no_progress,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m models_zoo.train``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train(parse_args(argv))
    logger.info(
        "%s: validation loss %.3f, %d parameters, %.3g training FLOPs -> %s",
        result.card.name,
        result.card.extra["validation_loss"],
        result.card.parameters,
        result.card.training_flops,
        result.path,
    )


if __name__ == "__main__":
    main()
