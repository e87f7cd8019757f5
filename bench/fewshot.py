"""Speed of few-shot scoring: evalcore.fewshot vs a naive loop vs lm-evaluation-harness.

Same local model directory, same task (RTE, lm-eval's prompt = our pattern ``lm``), same
number of examples and shots, same torch thread count. Reports examples/s of the scoring step
(model loading excluded for all three) and the accuracy each one gets, as a cross-check.

    .venv/bin/python bench/fewshot.py --limit 100 --shots 0 \
        --lm-eval-python /tmp/lmeval-venv/bin/python

lm-eval runs in its own interpreter (``--lm-eval-python``), never in the project venv; its row
is skipped with a note when the flag is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("bench.fewshot")

LM_EVAL_TASK = """\
task: ladder_rte
dataset_path: json
dataset_kwargs:
  data_files:
    train: {train}
    validation: {val}
output_type: multiple_choice
training_split: train
validation_split: validation
fewshot_split: train
doc_to_text: "{{{{premise}}}}\\nQuestion: {{{{hypothesis}}}} True or False?\\nAnswer:"
doc_to_target: "{{{{0 if label == 'entailment' else 1}}}}"
doc_to_choice: ["True", "False"]
metric_list:
  - metric: acc
"""

LM_EVAL_SCRIPT = """\
import json, sys, time, torch
torch.set_num_threads({threads})
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
lm = HFLM(pretrained={model!r}, batch_size={batch_size}, device="cpu", dtype="float32")
manager = TaskManager(include_path={include!r})
start = time.perf_counter()
out = simple_evaluate(model=lm, tasks=["ladder_rte"], limit={limit}, num_fewshot={shots},
                      task_manager=manager, random_seed=0, fewshot_random_seed=0)
seconds = time.perf_counter() - start
acc = out["results"]["ladder_rte"]["acc,none"]
print("RESULT " + json.dumps({{"seconds": seconds, "acc": acc}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default="/tmp/ladder-bench-gpt2")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--positions", type=int, default=2048, help="context window if created")
    parser.add_argument("--lm-eval-python", default=None)
    parser.add_argument("--lm-eval-batch-sizes", default="1,16")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    torch.set_num_threads(args.threads)
    from evalcore.fewshot.data import resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    model_dir = ensure_model(Path(args.model_dir), args.positions)
    pairs, golds = rte_requests(data_dir, args.limit, args.shots)
    rows = [run_ours(model_dir, pairs, golds)]
    if not args.skip_naive:
        rows.append(run_naive(model_dir, pairs, golds))
    if args.lm_eval_python:
        for batch_size in [int(b) for b in args.lm_eval_batch_sizes.split(",")]:
            rows.append(run_lm_eval(args, model_dir, data_dir, batch_size))
    else:
        rows.append({"method": "lm-evaluation-harness", "note": "skipped: no --lm-eval-python"})
    for row in rows:
        row.update(examples=args.limit, shots=args.shots, threads=args.threads)
    print(render(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


def ensure_model(path: Path, positions: int) -> Path:
    """A GPT-2-shaped random model big enough that the forward pass, not Python, dominates."""
    if (path / "config.json").is_file():
        return path
    from evalcore.fewshot.testing import make_tiny_causal_lm

    return make_tiny_causal_lm(
        path, layers=4, hidden=256, heads=4, positions=positions, vocab_size=2000
    )


def rte_requests(data_dir: Path, limit: int, shots: int) -> tuple[list[tuple[str, str]], list[int]]:
    """Pattern ``lm`` requests for the first ``limit`` RTE val docs, with ``shots`` fixed demos."""
    from evalcore.fewshot.data import load_task_data, records_to_docs
    from evalcore.fewshot.registry import get_task
    from evalcore.fewshot.sampler import DemoSampler

    spec = get_task("rte")
    data = load_task_data(spec, data_dir, limit=limit)
    pattern = spec.patterns[0]
    demos = DemoSampler(0, spec.name).sample(records_to_docs(spec, data.pool[:32]), shots)
    prefix = "".join(pattern.demonstration(d) + "\n\n" for d in demos)
    pairs, golds = [], []
    for doc in records_to_docs(spec, data.test):
        context = prefix + pattern.prompt(doc)
        pairs += [(context, pattern.continuation(doc, label)) for label in spec.labels]
        golds.append(spec.labels.index(doc.label))
    return pairs, golds


def accuracy(scores: list[float], golds: list[int]) -> float:
    pairs = [(scores[2 * i], scores[2 * i + 1]) for i in range(len(golds))]
    return sum(int(b > a) == g for (a, b), g in zip(pairs, golds, strict=True)) / len(golds)


def run_ours(model_dir: Path, pairs: list[tuple[str, str]], golds: list[int]) -> dict[str, Any]:
    from evalcore.fewshot.hf_adapter import HFCausalLM

    model = HFCausalLM(model_dir)
    model.loglikelihood(pairs[:4])  # warm-up
    start = time.perf_counter()
    scores = model.loglikelihood(pairs)
    seconds = time.perf_counter() - start
    return _row("evalcore.fewshot (HFCausalLM)", seconds, len(golds), accuracy(scores, golds))


def run_naive(model_dir: Path, pairs: list[tuple[str, str]], golds: list[int]) -> dict[str, Any]:
    """One request at a time: tokenize, one full forward pass, sum the continuation log-probs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    limit = model.config.n_positions
    scores = []
    start = time.perf_counter()
    with torch.inference_mode():
        for context, continuation in pairs:
            context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
            whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
            ids = whole[-limit:]
            n = len(whole) - len(context_ids)
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
            scores.append(
                sum(logprobs[len(ids) - n - 1 + i, ids[len(ids) - n + i]].item() for i in range(n))
            )
    seconds = time.perf_counter() - start
    return _row("naive loop (1 request per forward)", seconds, len(golds), accuracy(scores, golds))


def run_lm_eval(
    args: argparse.Namespace, model_dir: Path, data_dir: Path, batch_size: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as include:
        Path(include, "ladder_rte.yaml").write_text(
            LM_EVAL_TASK.format(
                train=data_dir / "RTE" / "train.jsonl", val=data_dir / "RTE" / "val.jsonl"
            )
        )
        script = LM_EVAL_SCRIPT.format(
            threads=args.threads,
            model=str(model_dir),
            batch_size=batch_size,
            include=include,
            limit=args.limit,
            shots=args.shots,
        )
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        out = subprocess.run(
            [args.lm_eval_python, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        logger.error("lm-eval failed:\n%s", out.stderr[-3000:])
        return {"method": f"lm-evaluation-harness (batch {batch_size})", "note": "failed, see log"}
    result = json.loads(lines[-1][len("RESULT ") :])
    return _row(
        f"lm-evaluation-harness 0.4.13 (batch {batch_size})",
        result["seconds"],
        args.limit,
        result["acc"],
    )


def _row(method: str, seconds: float, examples: int, acc: float) -> dict[str, Any]:
    return {
        "method": method,
        "seconds": round(seconds, 3),
        "examples_per_s": round(examples / seconds, 2),
        "accuracy": round(acc, 4),
    }


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | seconds | examples/s | accuracy |", "|---|---|---|---|"]
    for row in rows:
        if "note" in row:
            lines.append(f"| {row['method']} | – | – | {row['note']} |")
        else:
            values = (row["method"], row["seconds"], row["examples_per_s"], row["accuracy"])
            lines.append("| " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
