"""Speed of few-shot scoring: Ladder (models_zoo.fewshot_lm) vs a naive loop vs lm-evaluation-harness.

Same local model directory, same task (RTE, lm-eval's prompt = our pattern ``lm``), same
number of examples and of demonstrations k, same torch thread count. Each method scores the
same requests ``--repeats`` times after one warm-up; the table shows the medians of wall time
and of process CPU time of the scoring step only (model loading, and lm-eval's task building,
excluded), examples/s, how many times faster ours is, and accuracy as a cross-check. On a
shared host, CPU time is the steadier measure: wall time also counts other tenants' jobs.

    PYTHONPATH=. .venv/bin/python bench/fewshot.py --limit 30 --shots 2 \
        --lm-eval-python /tmp/lmeval-venv/bin/python

The default model (created on first use) is a random-init GPT-2 4 x 256 whose 8k BPE
vocabulary is trained on FewGLUE's unlabeled texts, so prompts have real-LM token counts.
Both use the first k train docs as the demonstrations of every doc (lm-eval's ``first_n``
sampler), so the prompts, and hence the accuracies, are the same. lm-eval runs in its own
interpreter (``--lm-eval-python``), never in the project venv; its row is skipped with a note
when the flag is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
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
fewshot_config:
  sampler: first_n
doc_to_text: "{{{{premise}}}}\\nQuestion: {{{{hypothesis}}}} True or False?\\nAnswer:"
doc_to_target: "{{{{0 if label == 'entailment' else 1}}}}"
doc_to_choice: ["True", "False"]
metric_list:
  - metric: acc
"""

LM_EVAL_SCRIPT = """\
import json, statistics, sys, time, torch
torch.set_num_threads({threads})
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
lm = HFLM(pretrained={model!r}, batch_size={batch_size}, device="cpu", dtype="float32")
manager = TaskManager(include_path={include!r})
clock = {{"wall": 0.0, "cpu": 0.0}}
score = lm.loglikelihood
def timed(*args, **kwargs):  # time the scoring step only, as for the other rows
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        return score(*args, **kwargs)
    finally:
        clock["wall"] += time.perf_counter() - wall
        clock["cpu"] += time.process_time() - cpu
lm.loglikelihood = timed
walls, cpus = [], []
for _ in range({repeats}):
    clock.update(wall=0.0, cpu=0.0)
    out = simple_evaluate(model=lm, tasks=["ladder_rte"], limit={limit}, num_fewshot={shots},
                          task_manager=manager, random_seed=0, fewshot_random_seed=0)
    walls.append(clock["wall"])
    cpus.append(clock["cpu"])
acc = out["results"]["ladder_rte"]["acc,none"]
result = {{"wall": walls, "cpu": cpus, "acc": acc}}
print("RESULT " + json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", default="/tmp/ladder-bench-gpt2-8k-vocab")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--positions", type=int, default=2048, help="context window if created")
    parser.add_argument("--vocab-size", type=int, default=8192, help="tokenizer size if created")
    parser.add_argument("--lm-eval-python", default=None)
    parser.add_argument("--lm-eval-batch-sizes", default="1")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    torch.set_num_threads(args.threads)
    from evalcore.fewshot.data import resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    model_dir = ensure_model(Path(args.model_dir), args.positions, args.vocab_size, data_dir)
    pairs, golds = rte_requests(data_dir, args.limit, args.shots)
    load = os.getloadavg()[0]
    rows = [run_ours(model_dir, pairs, golds, args.repeats)]
    rows.append(run_ours(model_dir, pairs, golds, args.repeats, invariant=False))
    if not args.skip_naive:
        rows.append(run_naive(model_dir, pairs, golds, args.repeats))
    if args.lm_eval_python:
        for batch_size in [int(b) for b in args.lm_eval_batch_sizes.split(",")]:
            rows.append(run_lm_eval(args, model_dir, data_dir, batch_size))
    else:
        rows.append({"method": "lm-evaluation-harness", "note": "skipped: no --lm-eval-python"})
    load = (load, os.getloadavg()[0])
    for row in rows:
        row.update(examples=args.limit, shots=args.shots, threads=args.threads, load=load)
    print(render(rows))
    for row in rows[:2]:
        print(
            f"{row['method']}: {row['requests_per_s']} requests/s, "
            f"{row['input_tokens_per_s']} input tokens/s ({row['scored_tokens']} scored), "
            f"prefix reuse saved {row['prefix_saved_share']:.1%} of the input tokens"
        )
    print(f"load average (1 min) before/after: {load[0]:.1f} / {load[1]:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


def ensure_model(path: Path, positions: int, vocab_size: int, data_dir: Path) -> Path:
    """A GPT-2-shaped random model (4 x 256) big enough that the forward pass dominates.

    Its BPE tokenizer is trained on the FewGLUE ``unlabeled.jsonl`` texts (never RTE), so with
    a vocabulary of thousands, prompts have about as many tokens as under a real LM's
    tokenizer; ``vocab_size`` 400 gives the near-byte-level tokens of the test fixture.
    """
    if (path / "config.json").is_file():
        return path
    from models_zoo.testing import make_tiny_causal_lm

    corpus = list(_texts(sorted(data_dir.glob("*/unlabeled.jsonl")))) if vocab_size > 400 else None
    return make_tiny_causal_lm(
        path,
        layers=4,
        hidden=256,
        heads=4,
        positions=positions,
        vocab_size=vocab_size,
        corpus=corpus,
    )


def _texts(files: list[Path]) -> Iterator[str]:
    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    for file in files:
        for line in file.read_text().splitlines():
            yield from strings(json.loads(line))


def rte_requests(data_dir: Path, limit: int, shots: int) -> tuple[list[tuple[str, str]], list[int]]:
    """Pattern ``lm`` requests for the first ``limit`` RTE val docs; the demonstrations are the
    first ``shots`` train docs for every doc, as lm-eval's ``first_n`` sampler gives it, so both
    score the very same prompts."""
    from evalcore.fewshot.data import load_task_data, records_to_docs
    from evalcore.fewshot.registry import get_task

    spec = get_task("rte")
    data = load_task_data(spec, data_dir, limit=limit)
    pattern = spec.patterns[0]
    demos = records_to_docs(spec, data.pool[:shots])
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


def timed_runs(
    score: Callable[[], list[float]], repeats: int
) -> tuple[list[float], list[float], list[float]]:
    """Wall and CPU seconds of ``repeats`` calls of ``score`` after one warm-up call."""
    scores = score()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        scores = score()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, scores


def run_ours(
    model_dir: Path,
    pairs: list[tuple[str, str]],
    golds: list[int],
    repeats: int,
    *,
    invariant: bool = True,
) -> dict[str, Any]:
    """Ladder's scorer; ``invariant`` (the default) or the batched prefix tree."""
    from models_zoo.fewshot_lm import load_fewshot_lm

    model = load_fewshot_lm(model_dir, invariant=invariant)
    walls, cpus, scores = timed_runs(lambda: model.loglikelihood(pairs), repeats)
    tokens = model.tokens_processed // (repeats + 1)
    served = model.served
    inputs = sum(len(served.encode_pair(c, x)[0]) - 1 for c, x in pairs)
    scored = sum(served.encode_pair(c, x)[1] for c, x in pairs)
    mode = "invariant chunks" if invariant else "batched prefix tree"
    row = _row(f"Ladder ({mode})", walls, cpus, len(golds), accuracy(scores, golds))
    wall = row["wall_s"]
    return {
        **row,
        "tokens": tokens,
        "requests_per_s": round(len(pairs) / wall, 1),
        "input_tokens_per_s": round(inputs / wall),
        "scored_tokens": scored,
        "prefix_saved_share": round(1 - tokens / inputs, 3),
    }


def run_naive(
    model_dir: Path, pairs: list[tuple[str, str]], golds: list[int], repeats: int
) -> dict[str, Any]:
    """One request at a time: tokenize, one full forward pass, sum the continuation log-probs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    limit = model.config.n_positions

    def score() -> list[float]:
        scores = []
        with torch.inference_mode():
            for context, continuation in pairs:
                context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
                whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
                ids = whole[-limit:]
                n = len(whole) - len(context_ids)
                logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
                start = len(ids) - n - 1
                scores.append(sum(logprobs[start + i, ids[start + 1 + i]].item() for i in range(n)))
        return scores

    walls, cpus, scores = timed_runs(score, repeats)
    return _row(
        "naive loop (1 request per forward)", walls, cpus, len(golds), accuracy(scores, golds)
    )


def run_lm_eval(
    args: argparse.Namespace, model_dir: Path, data_dir: Path, batch_size: int
) -> dict[str, Any]:
    method = f"lm-evaluation-harness (batch {batch_size})"
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
            repeats=args.repeats + 1,  # the first run is the warm-up, as for the other rows
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
        return {"method": method, "note": "failed, see log"}
    result = json.loads(lines[-1][len("RESULT ") :])
    version = subprocess.run(
        [args.lm_eval_python, "-c", "import lm_eval; print(lm_eval.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    method = f"lm-evaluation-harness {version} (batch {batch_size})"
    return _row(method, result["wall"][1:], result["cpu"][1:], args.limit, result["acc"])


def _row(
    method: str, walls: list[float], cpus: list[float], examples: int, acc: float
) -> dict[str, Any]:
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "method": method,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "walls": [round(w, 3) for w in walls],
        "cpus": [round(c, 3) for c in cpus],
        "examples_per_s": round(examples / wall, 2),
        "examples_per_cpu_s": round(examples / cpu, 2),
        "accuracy": round(acc, 4),
    }


def render(rows: list[dict[str, Any]]) -> str:
    """A markdown table; speed-ups are ours over each row, by CPU time and by wall time."""
    ours = rows[0]
    lines = [
        "| method | wall s | CPU s | examples/s (wall) | examples/CPU-s "
        "| ours is x faster (CPU / wall) | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "note" in row:
            lines.append(f"| {row['method']} | – | – | – | – | – | {row['note']} |")
            continue
        ratio = f"{row['cpu_s'] / ours['cpu_s']:.2f} / {row['wall_s'] / ours['wall_s']:.2f}"
        values = (
            row["method"],
            row["wall_s"],
            row["cpu_s"],
            row["examples_per_s"],
            row["examples_per_cpu_s"],
            "–" if row is ours else ratio,
            row["accuracy"],
        )
        lines.append("| " + " | ".join(str(v) for v in values) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
