"""Arena chat on CPU: time to first streamed token and tokens/s, SmolLM2-135M-Instruct.

Ours: ``models_zoo.chat.generate`` (the worker's path, chat template, streaming callback) on a
``models_zoo.serving`` model. Baseline: transformers ``generate`` with a ``TextStreamer``
subclass on the same loaded weights, same rendered prompt, greedy, same run. Both produce the
same tokens (checked). Goals (issue 15): first token <= 1.5 s at batch 1; tokens/s >= 1.5x
transformers.

    .venv/bin/python bench/arena_chat.py --threads 1 2 --new-tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def _checkpoint(directory: Path) -> Path:
    from models_zoo import gguf

    return gguf.convert(gguf.smollm2_gguf_path(), directory, dtype="float32")


def run_ours(served: Any, new_tokens: int) -> tuple[float, float, list[int]]:
    from models_zoo import chat

    started = time.perf_counter()
    first: list[float] = []

    def on_text(_text: str) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    answer = chat.generate(
        served,
        [{"role": "user", "content": PROMPT}],
        chat.ChatSettings(max_new_tokens=new_tokens),
        on_text=on_text,
    )
    wall = time.perf_counter() - started
    return (first[0] if first else wall), answer.new_tokens / wall, list(answer.token_ids)


def run_transformers(served: Any, new_tokens: int) -> tuple[float, float, list[int]]:
    import torch
    from transformers import TextStreamer

    from models_zoo import chat

    text = chat.render(served.tokenizer, [{"role": "user", "content": PROMPT}]).text
    inputs = torch.tensor([chat.encode(served.tokenizer, text)])
    first: list[float] = []

    class FirstToken(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text and not first:
                first.append(time.perf_counter() - started)

    streamer = FirstToken(served.tokenizer, skip_prompt=True)
    started = time.perf_counter()
    with torch.inference_mode():
        output = served.model.generate(
            inputs,
            attention_mask=torch.ones_like(inputs),
            max_new_tokens=new_tokens,
            do_sample=False,
            streamer=streamer,
            eos_token_id=list(chat.stop_token_ids(served.tokenizer)),
            pad_token_id=served.tokenizer.pad_token_id,
        )
    wall = time.perf_counter() - started
    tokens = output[0, inputs.shape[1] :].tolist()
    stops = set(chat.stop_token_ids(served.tokenizer))
    tokens = [token for token in tokens if token not in stops]
    return (first[0] if first else wall), len(tokens) / wall, tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "bench-smollm2-f32")
    args = parser.parse_args()

    import torch

    from models_zoo import serving

    served = serving.load(_checkpoint(args.dir), device="cpu", dtype="float32")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores, torch {torch.__version__}")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        run_ours(served, 4)  # warm-up, both paths
        run_transformers(served, 4)
        results: dict[str, list[tuple[float, float, list[int]]]] = {"ours": [], "hf": []}
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            results["ours"].append(run_ours(served, args.new_tokens))
            results["hf"].append(run_transformers(served, args.new_tokens))
        same = results["ours"][0][2] == results["hf"][0][2]
        medians = {
            name: (
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
            )
            for name, runs in results.items()
        }
        rows.append((threads, medians, same, len(results["ours"][0][2])))
    print(f"load average after {os.getloadavg()}")
    print("\n| threads | path | first token s | tokens/s | vs transformers | same tokens |")
    print("|---|---|---|---|---|---|")
    for threads, medians, same, count in rows:
        hf_rate = medians["hf"][1]
        for name, label in (("hf", "transformers generate"), ("ours", "models_zoo.chat")):
            first, rate = medians[name]
            ratio = f"{rate / hf_rate:.2f}x" if hf_rate else "-"
            print(
                f"| {threads} | {label} | {first:.3f} | {rate:.2f} | {ratio} | {same} ({count}) |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
