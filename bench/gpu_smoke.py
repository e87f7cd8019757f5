"""GPU smoke run of the model zoo: train or make a small checkpoint, serve it, print a table.

    python bench/gpu_smoke.py                 # CUDA (fails loudly without it)
    python bench/gpu_smoke.py --device cpu    # same run on CPU

Loads a zoo checkpoint with ``models_zoo.serving.load``, generates for a batch of prompts,
scores log-likelihoods and prints device name, tokens/s, peak memory and a sample.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from models_zoo import serving  # noqa: E402
from models_zoo.testing import make_tiny_checkpoint  # noqa: E402
from models_zoo.train import TrainSettings, train  # noqa: E402

PROMPTS = ["The for statement", "A class definition", "The import statement", "Exceptions are"]
PAIRS = [("The return statement", " leaves the function"), ("The return statement", " banana")]


def build_checkpoint(directory: Path, arch: str, steps: int) -> Path:
    """Train ``steps`` tiny-preset steps (0: random-init tiny checkpoint) into ``directory``."""
    if steps == 0:
        return make_tiny_checkpoint(directory, arch=arch)
    train(TrainSettings(arch=arch, preset="tiny", steps=steps, out=directory, progress=False))
    return directory


def device_name(device: str) -> str:
    """Human-readable accelerator name."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({torch.get_num_threads()} threads)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the smoke test and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(description="model zoo serving smoke run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arch", choices=("longnet", "dense"), default="longnet")
    parser.add_argument("--steps", type=int, default=100, help="training steps; 0 = random init")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--checkpoint", type=Path, default=None, help="serve this directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available; use --device cpu", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        path = args.checkpoint or build_checkpoint(Path(scratch) / "zoo", args.arch, args.steps)
        prepared = time.perf_counter() - started
        model = serving.load(path, device=args.device)
        model.generate(PROMPTS[:1], max_new_tokens=4)  # warm-up (CUDA context, kernels)
        result = model.generate_with_stats(PROMPTS, max_new_tokens=args.max_new_tokens)
        scores = model.loglikelihood(PAIRS)
    rows = [
        ("device", device_name(str(model.device))),
        ("torch", torch.__version__),
        ("checkpoint", f"{args.arch}, {model.num_parameters:,} parameters, {args.steps} steps"),
        ("prepare time (s)", f"{prepared:.1f}"),
        ("dtype", str(next(model.model.parameters()).dtype)),
        ("prompts x new tokens", f"{len(PROMPTS)} x {args.max_new_tokens} -> {result.new_tokens}"),
        ("generate wall (s)", f"{result.wall_time_s:.3f}"),
        ("tokens/s", f"{result.tokens_per_s:.1f}"),
        ("peak memory (MiB)", f"{result.peak_memory_bytes / 2**20:.1f}"),
        ("loglik sensible/odd", f"{scores[0]:.2f} / {scores[1]:.2f}"),
        ("sample", repr(PROMPTS[0] + result.texts[0])[:90]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
