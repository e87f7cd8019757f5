"""Arena chat on CPU: time to first streamed token and tokens/s, SmolLM2-135M-Instruct.

Ours: ``models_zoo.chat.generate`` (the worker's path, chat template, streaming callback) on a
``models_zoo.serving`` model. Baseline: transformers ``generate`` with a ``TextStreamer``
subclass on the same loaded weights, same rendered prompt, greedy, same run. Both produce the
same tokens (checked). Goals (issue 15): first token <= 1.5 s at batch 1; tokens/s >= 1.5x
transformers. Besides wall-clock tokens/s (what a user sees) each run records the process's
CPU time, which a loaded shared machine distorts less ("CPU tokens/s": tokens per CPU second).

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


Run = tuple[float, float, float, list[int]]  # first token s, tokens/s, CPU tokens/s, tokens


def run_ours(served: Any, new_tokens: int) -> Run:
    from models_zoo import chat

    started, cpu = time.perf_counter(), time.process_time()
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
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    count = answer.new_tokens
    return (first[0] if first else wall), count / wall, count / cpu, list(answer.token_ids)


def run_transformers(served: Any, new_tokens: int) -> Run:
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
    started, cpu = time.perf_counter(), time.process_time()
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
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    tokens = output[0, inputs.shape[1] :].tolist()
    stops = set(chat.stop_token_ids(served.tokenizer))
    tokens = [token for token in tokens if token not in stops]
    return (first[0] if first else wall), len(tokens) / wall, len(tokens) / cpu, tokens


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
        results: dict[str, list[Run]] = {"ours": [], "hf": []}
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            results["ours"].append(run_ours(served, args.new_tokens))
            results["hf"].append(run_transformers(served, args.new_tokens))
        same = all(a[3] == b[3] for a, b in zip(results["ours"], results["hf"]))
        medians = {
            name: tuple(statistics.median(r[i] for r in runs) for i in range(3))
            for name, runs in results.items()
        }
        rows.append((threads, medians, same, len(results["ours"][0][3])))
    print(f"load average after {os.getloadavg()}")
    print(
        "\n| threads | path | first token s | tokens/s | vs transformers | CPU tokens/s "
        "| vs transformers (CPU) | same tokens |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for threads, medians, same, count in rows:
        hf_rate, hf_cpu = medians["hf"][1], medians["hf"][2]
        for name, label in (("hf", "transformers generate"), ("ours", "models_zoo.chat")):
            first, rate, cpu_rate = medians[name]
            print(
                f"| {threads} | {label} | {first:.3f} | {rate:.2f} | {rate / hf_rate:.2f}x "
                f"| {cpu_rate:.2f} | {cpu_rate / hf_cpu:.2f}x | {same} ({count}) |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
