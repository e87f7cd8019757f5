"""bf16 greedy agreement of the CUDA-graph decoder on trained checkpoints (issue 19).

    python3 bench/bf16_agreement.py --train-steps 600 --out agreement.md     # on the GPU

Random weights make greedy decoding a string of near-ties, where any change in rounding picks
another token; a trained model has confident next tokens, so agreement there says how far the
fused bf16 decoder (``models_zoo.fast_decode``: concatenated q/k/v and gate/up products, its own
rotary and attention) departs from the model's own forward. For each zoo architecture (dense and
LongNet), a ``small``-preset model is trained on the default corpus (``models_zoo.train``, on the
device), or read from ``--checkpoint``; ``--prompts`` prompts of ``--prompt-tokens`` tokens are cut
from the held-out tail of the corpus and ``--new`` tokens decoded greedily by:
- ``fp32 own``: the model's own ``generate`` in fp32 (tf32 off), the reference;
- ``bf16 own``: the model's own ``generate`` on bf16 weights;
- ``bf16 graph``: ``generate_fast`` (CUDA graph) on the same bf16 weights;
- ``fp32 graph``: ``generate_fast`` in fp32 (must equal the reference: also a GPU test).
The table gives, against the fp32 reference and between the two bf16 paths, the share of rows
whose tokens are all equal, the mean length of the equal prefix, and the share of equal tokens.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from models_zoo.fast_decode import clear_caches, generate_fast  # noqa: E402
from models_zoo.serving import load  # noqa: E402
from models_zoo.train import TrainSettings, train  # noqa: E402


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """(rows all equal, mean equal-prefix length, equal tokens) of two ``(B, N)`` outputs."""
    same = a == b
    prefix = torch.cumprod(same.long(), dim=1).sum(dim=1).float()
    return float(same.all(dim=1).float().mean()), float(prefix.mean()), float(same.float().mean())


def prompts_from(tokenizer: object, count: int, length: int, device: str) -> torch.Tensor:
    """``count`` prompts of ``length`` tokens cut from the corpus tail (held out in training)."""
    from models_zoo.corpus import default_corpus_text

    text = default_corpus_text()
    ids = tokenizer(text[-len(text) // 10 :])["input_ids"]  # type: ignore[operator]
    stride = max(1, (len(ids) - length) // count)
    rows = [ids[i * stride : i * stride + length] for i in range(count)]
    return torch.tensor(rows, device=device)


def decode_all(path: Path, prompts: torch.Tensor, new: int, device: str) -> dict[str, torch.Tensor]:
    """Greedy tokens of the four decoders for ``prompts``."""
    out: dict[str, torch.Tensor] = {}
    for dtype in ("float32", "bfloat16"):
        served = load(path, device=device, dtype=dtype)
        model = served.model
        width = prompts.shape[1]
        own = model.generate(prompts, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        tag = "fp32" if dtype == "float32" else "bf16"
        out[f"{tag} own"] = own[:, width:]
        out[f"{tag} graph"] = generate_fast(model, prompts, max_new_tokens=new)
        clear_caches()
        del served, model
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["dense", "longnet"])
    parser.add_argument("--checkpoint", type=Path, nargs="*", default=None)
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of the script")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    lines = [
        f"{datetime.date.today()} on {device_name(args.device)}: greedy agreement, "
        f"{args.prompts} prompts x {args.prompt_tokens} tokens, {args.new} new tokens",
        "",
        "| model | train loss (last 20 steps) | pair | rows all equal | mean equal prefix | equal tokens |",
        "|---|---|---|---|---|---|",
    ]
    work = Path(tempfile.mkdtemp(prefix="agreement-"))
    for index, arch in enumerate(args.arch):
        if args.checkpoint:
            path, loss = args.checkpoint[index], float("nan")
        else:
            settings = TrainSettings(
                arch=arch, preset="small", steps=args.train_steps, out=work / arch,
                device=args.device, progress=False,
            )  # fmt: skip
            result = train(settings)
            path, loss = result.path, sum(result.losses[-20:]) / len(result.losses[-20:])
        served = load(path, device="cpu")
        prompts = prompts_from(served.tokenizer, args.prompts, args.prompt_tokens, args.device)
        tokens = decode_all(path, prompts, args.new, args.device)
        for a, b in (("fp32 own", "fp32 graph"), ("fp32 own", "bf16 own"),
                     ("fp32 own", "bf16 graph"), ("bf16 own", "bf16 graph")):  # fmt: skip
            rows, prefix, share = agreement(tokens[a], tokens[b])
            lines.append(f"| {arch} | {loss:.3f} | {a} vs {b} | {rows:.1%} | {prefix:.1f} of "
                         f"{args.new} | {share:.1%} |")  # fmt: skip
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
