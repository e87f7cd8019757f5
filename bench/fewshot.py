"""Speed of few-shot scoring: Ladder (models_zoo.fewshot_lm) vs a naive loop vs lm-evaluation-harness.

Same local model directory, same task (RTE, lm-eval's prompt = our pattern ``lm``), same
number of examples and of demonstrations k, same torch thread count. Each method scores the
same requests ``--repeats`` times after one warm-up; the table shows the medians of wall time
and of process CPU time of the scoring step only (model loading, and lm-eval's task building,
excluded), examples/s, how many times faster ours is, and accuracy as a cross-check. On a
shared host, CPU time is the steadier measure: wall time also counts other tenants' jobs.

    PYTHONPATH=. .venv/bin/python bench/fewshot.py --limit 30 --shots 0,2,4,8 --skip-naive \
        --lm-eval-python var/lmeval-py/bin/python

``var/lmeval-py`` (throwaway, never a dependency): ``python3 -m venv var/lmeval-py``, a ``.pth``
file in its site-packages naming the project venv's site-packages (so lm-eval runs on the same
torch and transformers as Ladder; appended last, lm-eval's own packages come first), then
``var/lmeval-py/bin/pip install lm_eval==0.4.13`` (check with ``--dry-run`` that it installs
nothing the project venv already has).

The default model (created on first use) is a random-init GPT-2 4 x 256 whose 8k BPE
vocabulary is trained on FewGLUE's unlabeled texts, so prompts have real-LM token counts.
Both use the first k train docs as the demonstrations of every doc (lm-eval's ``first_n``
sampler), so the prompts, and hence the accuracies, are the same. lm-eval runs in its own
interpreter (``--lm-eval-python``), never in the project venv; its row is skipped with a note
when the flag is absent. ``--shots`` takes several k: lm-eval then loads the model once per
batch size for all of them. Every row reports requests/s, model-input tokens/s and scored
(continuation) tokens/s on the same request and token counts, and Ladder's rows the share of
input tokens prefix reuse saved.

GPU (``--device cuda``; ``--dtype`` defaults to bfloat16 there, float32 on CPU, and is
recorded in every JSON row with the GPU's name): ``--model-preset llama-1b`` makes a
random-init Llama of 1.0B parameters (hidden 2048, 16 layers, 32 query / 8 KV heads, MLP
8192, the same 8k BPE, which adds BOS as Llama's does) on the GPU in the chosen dtype, and
lm-eval's ``HFLM`` gets the same directory, ``device`` and ``dtype``. lm-eval travels as the
wheels of ``bench/gpu_wheels_fewshot.txt`` (the packages its run needs that the device image
lacks). Before the run, on this machine (repository root):

    mkdir -p .whl-fewshot var && cp -r /work/shared/data/fewglue var/fewglue
    for w in $(cat bench/gpu_wheels_fewshot.txt); do python3 -m pip download --no-deps \
        --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl-fewshot "$w"; done   # 10.0 MB

then the device command (one line; carry ``.whl-fewshot`` and ``var/fewglue``; about 3-5
minutes on an H100, most of it lm-eval at batch 1):

    python3 -m pip install -q --no-deps --no-index .whl-fewshot/*.whl && python3 -m pip list 2>/dev/null | grep -iE '^(torch|transformers|accelerate|datasets|fsspec|pyarrow|huggingface.hub|lm.eval|dill|multiprocess) ' ; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader ; PYTHONPATH=. timeout 570 python3 bench/fewshot.py --device cuda --model-preset llama-1b --dtype bfloat16 --data-dir var/fewglue --limit 100 --shots 0,2,4,8 --repeats 2 --batch-size 32 --skip-naive --lm-eval-python python3 --lm-eval-batch-sizes 1,32 --out $OUT/fewshot_gpu.json 2>&1 | grep -vE 'it/s]|Loading weights' | tail -150

``$OUT/fewshot_gpu.json`` is rewritten after each k, so a run cut short keeps the finished
ones. ``--model-preset llama-test`` runs the same Llama path (bf16 included) on a CPU in
seconds, as a smoke test.
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
lm = HFLM(pretrained={model!r}, batch_size={batch_size}, device={device!r}, dtype={dtype!r})
manager = TaskManager(include_path={include!r})
clock = {{"wall": 0.0, "cpu": 0.0}}
score = lm.loglikelihood
def timed(*args, **kwargs):  # time the scoring step only, as for the other rows
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        return score(*args, **kwargs)
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        clock["wall"] += time.perf_counter() - wall
        clock["cpu"] += time.process_time() - cpu
lm.loglikelihood = timed
for shots in {shots!r}:
    walls, cpus = [], []
    for _ in range({repeats}):
        clock.update(wall=0.0, cpu=0.0)
        out = simple_evaluate(model=lm, tasks=["ladder_rte"], limit={limit}, num_fewshot=shots,
                              task_manager=manager, random_seed=0, fewshot_random_seed=0)
        walls.append(clock["wall"])
        cpus.append(clock["cpu"])
    acc = out["results"]["ladder_rte"]["acc,none"]
    result = {{"shots": shots, "wall": walls, "cpu": cpus, "acc": acc}}
    print("RESULT " + json.dumps(result), flush=True)
"""

# Bench models, made on first use in ``--model-dir`` (default: the preset's directory) with
# an 8k BPE trained on FewGLUE's unlabeled texts. ``llama-1b`` is for the GPU: hidden 2048,
# 16 layers, 32 query / 8 KV heads, MLP 8192 (1.0B parameters with the 8k vocabulary), made
# on ``--device``; ``llama-test`` is a 2-layer model of the same kind that runs the same path
# (BOS-adding tokenizer, grouped-query attention, ``--dtype``) on a CPU in seconds.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-4x256": {"arch": "gpt2", "layers": 4, "hidden": 256, "heads": 4},
    "llama-1b": {
        "arch": "llama",
        "layers": 16,
        "hidden": 2048,
        "heads": 32,
        "kv_heads": 8,
        "intermediate": 8192,
    },
    "llama-test": {
        "arch": "llama",
        "layers": 2,
        "hidden": 128,
        "heads": 4,
        "kv_heads": 2,
        "intermediate": 256,
    },
}
DEFAULT_MODEL_DIRS = {
    "gpt2-4x256": "/tmp/ladder-bench-gpt2-8k-vocab",
    "llama-1b": "/tmp/ladder-bench-llama-1b",
    "llama-test": "/tmp/ladder-bench-llama-test",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-preset", choices=sorted(PRESETS), default="gpt2-4x256")
    parser.add_argument("--model-dir", default=None, help="default: the preset's /tmp folder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N], for every method")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="weights and compute for every method (default: float32 on CPU, bfloat16 on CUDA)",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--shots", default="2", help="k, or several: 0,2,4,8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Ladder's rows per pass (default: the served model's, 16 on CPU, 256 on CUDA)",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="Ladder rows through the wide scorer (CUDA's default; on CPU a dry run of it)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument("--positions", type=int, default=2048, help="context window if created")
    parser.add_argument("--vocab-size", type=int, default=8192, help="tokenizer size if created")
    parser.add_argument("--lm-eval-python", default=None)
    parser.add_argument("--lm-eval-batch-sizes", default="1")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    args.shots = [int(k) for k in str(args.shots).split(",")]
    args.dtype = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    args.wide = args.wide or args.device.startswith("cuda")
    args.model_dir = args.model_dir or DEFAULT_MODEL_DIRS[args.model_preset]
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    torch.set_num_threads(args.threads)
    from evalcore.fewshot.data import resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    started = time.perf_counter()
    model_dir = ensure_model(args, data_dir)
    logger.info("model ready in %.1f s: %s", time.perf_counter() - started, model_dir)
    setting = describe(args, model_dir)
    args.peak_flops = measure_peak_flops(args.device) if args.device.startswith("cuda") else None
    if args.peak_flops:
        setting["bf16_matmul_tflops"] = round(args.peak_flops / 1e12, 1)
    logger.info("setting: %s", json.dumps(setting))
    lm_eval_rows = run_lm_eval_all(args, model_dir, data_dir) if args.lm_eval_python else {}
    all_rows = []
    for shots in args.shots:
        rows = run_shots(args, model_dir, data_dir, shots, lm_eval_rows.get(shots, []))
        print(f"\nk = {shots}, {args.limit} docs, {setting['device_name']}, {args.dtype}:")
        print(render(rows))
        for row in rows:
            if "requests_per_s" in row:
                print(throughput_line(row))
        all_rows += [{**row, **setting} for row in rows]
        if args.out:  # after each k, so that a run cut short keeps the finished ones
            Path(args.out).write_text(json.dumps(all_rows, indent=1) + "\n")
    print(f"load average (1 min) now: {os.getloadavg()[0]:.1f}")


def run_shots(
    args: argparse.Namespace,
    model_dir: Path,
    data_dir: Path,
    shots: int,
    lm_eval_rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Ladder's two modes (and the naive loop) at ``shots``, then the lm-eval rows already
    measured for it; every row gets requests/s and tokens/s on the same request counts."""
    pairs, golds = rte_requests(data_dir, args.limit, shots)
    load = os.getloadavg()[0]
    if args.wide:  # the demonstration prefix broadcast to the rows, or recomputed per row
        rows = [run_ours(args, model_dir, pairs, golds, mode="wide")]
        rows.append(run_ours(args, model_dir, pairs, golds, mode="wide, prefix recomputed"))
    else:
        rows = [run_ours(args, model_dir, pairs, golds)]
        rows.append(run_ours(args, model_dir, pairs, golds, mode="batched prefix tree"))
    if not args.skip_naive:
        rows.append(run_naive(args, model_dir, pairs, golds))
    rows += lm_eval_rows or [
        {"method": "lm-evaluation-harness", "note": "skipped: no --lm-eval-python"}
    ]
    counts = {key: rows[0][key] for key in ("requests", "input_tokens", "scored_tokens")}
    for row in rows:
        if "wall_s" in row:
            add_rates(row, **counts)
            add_floor(row, args.peak_flops, rows[0])
        row.update(examples=args.limit, shots=shots, threads=args.threads)
        row.setdefault("load", (load, os.getloadavg()[0]))
    return rows


def add_rates(row: dict[str, Any], *, requests: int, input_tokens: int, scored_tokens: int) -> None:
    """Requests/s, model-input tokens/s and scored (continuation) tokens/s of the wall time."""
    wall = row["wall_s"]
    row["requests_per_s"] = round(requests / wall, 1)
    row["input_tokens_per_s"] = round(input_tokens / wall)
    row["scored_tokens_per_s"] = round(scored_tokens / wall, 1)


def add_floor(row: dict[str, Any], peak_flops: float | None, ours: dict[str, Any]) -> None:
    """The FLOP floor (2 x parameters x tokens the method runs, over the measured bf16 matmul
    peak) and the share of it the wall time reaches. lm-eval runs each distinct model input
    once (its one-token-continuation grouping): ``unique_input_tokens``."""
    if not peak_flops:
        return
    tokens = row.get("tokens", ours["unique_input_tokens"])
    floor = 2 * ours["parameters"] * tokens / peak_flops
    row["flop_floor_s"] = round(floor, 4)
    row["floor_share"] = round(floor / row["wall_s"], 3)


def measure_peak_flops(device: str) -> float:
    """bf16 matmul rate of this GPU (8192^3 on random data, median of 20 event-timed runs)."""
    import torch

    a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return 2 * 8192**3 / statistics.median(times)


def throughput_line(row: dict[str, Any]) -> str:
    saved = row.get("prefix_saved_share")
    tail = f", prefix reuse saved {saved:.1%} of the input tokens" if saved is not None else ""
    if "floor_share" in row:
        tail += f", {row['floor_share']:.1%} of the FLOP floor ({row['flop_floor_s']} s)"
    if "encode_s" in row:
        tail += f", encoding {row['encode_s']} s"
    return (
        f"{row['method']}: {row['requests_per_s']} requests/s, "
        f"{row['input_tokens_per_s']} input tokens/s, "
        f"{row['scored_tokens_per_s']} scored tokens/s{tail}"
    )


def describe(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """What the numbers were measured on, recorded in every JSON row."""
    import torch
    import transformers

    cuda = args.device.startswith("cuda")
    return {
        "model_preset": args.model_preset,
        "model_dir": str(model_dir),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if cuda else "CPU",
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def ensure_model(args: argparse.Namespace, data_dir: Path) -> Path:
    """The preset's random-init model in ``args.model_dir``, made there on first use.

    Its BPE tokenizer is trained on the FewGLUE ``unlabeled.jsonl`` texts (never RTE), so with
    a vocabulary of thousands, prompts have about as many tokens as under a real LM's
    tokenizer; ``--vocab-size`` 400 gives the near-byte-level tokens of the test fixture.
    The Llama presets' tokenizer adds BOS, as Llama's does (and lm-eval then scores with it).
    """
    import torch

    path = Path(args.model_dir)
    if (path / "config.json").is_file():
        return path
    from models_zoo.testing import make_tiny_causal_lm, make_tiny_llama

    corpus = None
    if args.vocab_size > 400:
        corpus = list(_texts(sorted(data_dir.glob("*/unlabeled.jsonl"))))
    shape = {k: v for k, v in PRESETS[args.model_preset].items() if k != "arch"}
    common = {"positions": args.positions, "vocab_size": args.vocab_size, "corpus": corpus}
    if PRESETS[args.model_preset]["arch"] == "gpt2":
        return make_tiny_causal_lm(path, **shape, **common)
    dtype = getattr(torch, args.dtype)
    return make_tiny_llama(path, **shape, **common, device=args.device, dtype=dtype)


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
    """Wall and CPU seconds of ``repeats`` calls of ``score`` after one warm-up call (the
    scores come back as Python floats, so a CUDA call has finished when it returns)."""
    scores = score()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        scores = score()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, scores


def run_ours(
    args: argparse.Namespace,
    model_dir: Path,
    pairs: list[tuple[str, str]],
    golds: list[int],
    *,
    mode: str = "invariant chunks",
) -> dict[str, Any]:
    """Ladder's scorer: ``invariant chunks`` (the CPU default), ``batched prefix tree``,
    ``wide`` (CUDA's default) or ``wide, prefix recomputed``."""
    from models_zoo import serving
    from models_zoo.fewshot_lm import FewshotLM

    served = serving.load(model_dir, device=args.device, dtype=args.dtype)
    served.use_wide_scoring = mode.startswith("wide")
    served.wide_share_prefix = mode == "wide"
    model = FewshotLM(served, invariant=mode != "batched prefix tree", batch_size=args.batch_size)
    walls, cpus, scores = timed_runs(lambda: model.loglikelihood(pairs), args.repeats)
    tokens = model.tokens_processed // (args.repeats + 1)
    started = time.perf_counter()
    encoded = served.encode_pairs(pairs)
    encode_s = time.perf_counter() - started
    inputs = sum(len(ids) - 1 for ids, _ in encoded)
    row = _row(f"Ladder ({mode})", walls, cpus, len(golds), accuracy(scores, golds))
    return {
        **row,
        "mode": model.scoring["mode"],
        "rows_per_pass": model.batch_size,
        "tokens": tokens,
        "requests": len(pairs),
        "input_tokens": inputs,
        "unique_input_tokens": sum(map(len, {tuple(ids[:-1]) for ids, _ in encoded})),
        "parameters": served.num_parameters,
        "scored_tokens": sum(count for _, count in encoded),
        "prefix_saved_share": round(1 - tokens / inputs, 3),
        "encode_s": round(encode_s, 3),
    }


def run_naive(
    args: argparse.Namespace, model_dir: Path, pairs: list[tuple[str, str]], golds: list[int]
) -> dict[str, Any]:
    """One request at a time: tokenize, one full forward pass, sum the continuation log-probs
    (no special tokens: on a BOS-adding tokenizer its scores differ from the others')."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    model = model.to(args.device).eval()
    config = model.config
    limit = getattr(config, "n_positions", None) or config.max_position_embeddings

    def score() -> list[float]:
        scores = []
        with torch.inference_mode():
            for context, continuation in pairs:
                context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
                whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
                ids = whole[-limit:]
                n = len(whole) - len(context_ids)
                logits = model(torch.tensor([ids], device=args.device)).logits[0]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                start = len(ids) - n - 1
                scores.append(sum(logprobs[start + i, ids[start + 1 + i]].item() for i in range(n)))
        return scores

    walls, cpus, scores = timed_runs(score, args.repeats)
    return _row(
        "naive loop (1 request per forward)", walls, cpus, len(golds), accuracy(scores, golds)
    )


def run_lm_eval_all(
    args: argparse.Namespace, model_dir: Path, data_dir: Path
) -> dict[int, list[dict[str, Any]]]:
    """lm-eval's rows for every k, one interpreter (one model load) per batch size."""
    rows: dict[int, list[dict[str, Any]]] = {}
    for batch_size in [int(b) for b in args.lm_eval_batch_sizes.split(",")]:
        for shots, row in run_lm_eval(args, model_dir, data_dir, batch_size).items():
            rows.setdefault(shots, []).append(row)
    return rows


def run_lm_eval(
    args: argparse.Namespace, model_dir: Path, data_dir: Path, batch_size: int
) -> dict[int, dict[str, Any]]:
    """lm-eval's ``simple_evaluate`` in ``--lm-eval-python`` on the same model, device and
    dtype, ``--repeats`` timed runs after a warm-up for each k."""
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
            device=args.device,
            dtype=args.dtype,
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
    results = [
        json.loads(line[len("RESULT ") :])
        for line in out.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    if out.returncode != 0 or not results:
        logger.error("lm-eval failed:\n%s", out.stderr[-3000:])
    version = subprocess.run(
        [args.lm_eval_python, "-c", "import lm_eval; print(lm_eval.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    method = f"lm-evaluation-harness {version} (batch {batch_size})"
    rows = {
        r["shots"]: _row(method, r["wall"][1:], r["cpu"][1:], args.limit, r["acc"]) for r in results
    }
    for shots in args.shots:
        rows.setdefault(shots, {"method": method, "note": "failed, see log"})
    return rows


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
