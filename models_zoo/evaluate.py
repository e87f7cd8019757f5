"""Command line of the few-shot benchmarks: ``python -m models_zoo.evaluate --model PATH ...``.

It binds the pure runner (``evalcore.fewshot``) to a model loaded by ``models_zoo.serving``
(through ``models_zoo.fewshot_lm.FewshotLM``) or to the probe's embedder.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalcore.fewshot.lmeval import LM_EVAL_FEWSHOT_SEED
from evalcore.fewshot.lmeval_runner import SAMPLER_OPTIONS
from evalcore.fewshot.schema import validate_results
from models_zoo.fewshot_lm import load_fewshot_lm
from models_zoo.serving import SPECIAL_TOKEN_CHOICES, SPECIAL_TOKENS_DEFAULT

logger = logging.getLogger(__name__)

PROBE_MODELS = ("minilm-probe", "minilm")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the few-shot runner."""
    parser = argparse.ArgumentParser(
        prog="python -m models_zoo.evaluate",
        description="Few-shot evaluation of a local causal LM: FewGLUE under FewNLU Multi-Splits "
        "and lm-eval task files.",
    )
    parser.add_argument("--model", required=True, help="model directory, or 'minilm-probe'")
    parser.add_argument("--method", choices=("auto", "in_context", "probe"), default="auto")
    parser.add_argument(
        "--tasks",
        default=None,
        help="FewGLUE task names, comma-separated, or 'all' (default when no --task-file is given)",
    )
    _add_task_file_arguments(parser)
    parser.add_argument("--splits", type=int, default=4, help="K random train/dev splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", default="0,2", help="candidate k values, e.g. 0,2")
    parser.add_argument("--data-dir", default=None, help="FewGLUE folder")
    parser.add_argument("--limit", type=int, default=None, help="first N test records per task")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default), bfloat16 ...")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per forward batch (default: 16 on CPU, 256 in CUDA's wide passes)",
    )
    parser.add_argument(
        "--batched-tree",
        action="store_true",
        help="score with the batched prefix tree (each prompt token once; the last bits of a "
        "score then depend on the batch) instead of the invariant chunks",
    )
    parser.add_argument(
        "--special-tokens",
        choices=SPECIAL_TOKEN_CHOICES,
        default=SPECIAL_TOKENS_DEFAULT,
        help="tokenizer: its own special tokens (BOS), as lm-eval; none: never add them",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is best on a busy host)"
    )
    parser.add_argument("--out", required=True, help="where to write the results JSON")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _add_task_file_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of lm-eval task files and of the results cache."""
    parser.add_argument(
        "--task-file", action="append", default=[], help="an lm-eval task YAML (repeatable)"
    )
    parser.add_argument("--num-fewshot", type=int, default=None, help="task files: shots")
    parser.add_argument("--fewshot-seed", type=int, default=LM_EVAL_FEWSHOT_SEED)
    parser.add_argument(
        "--sampler",
        choices=SAMPLER_OPTIONS,
        default="lm_eval",
        help="task files: lm_eval (its sampler, its prompts) or fixed (one draw for all docs)",
    )
    parser.add_argument(
        "--chat",
        action="store_true",
        help="task files: the model's chat template, "
        "demonstrations as alternating turns (for instruct models)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="per-request results cache; a rerun resumes from it"
    )
    parser.add_argument(
        "--cache-flush", type=int, default=64, help="requests scored between cache writes"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the results; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        results = _run(args)
    except (ValueError, FileNotFoundError) as error:  # TaskFileError is a ValueError
        logger.error("%s", error)
        sys.stderr.write(f"error: {error}\n")
        return 2
    errors = validate_results(results)
    if errors:  # a bug on our side, but never write an invalid document silently
        sys.stderr.write("results failed validation:\n  " + "\n  ".join(errors) + "\n")
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    average = results["average"]
    summary = f"{average['mean']:.4f} ± {average['std']:.4f}" if average else "n/a"
    sys.stderr.write(f"wrote {out} (FewNLU average {summary})\n")
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    method = args.method
    if method == "auto":
        method = "probe" if args.model in PROBE_MODELS else "in_context"
    if method == "probe":
        return _run_probe(args)
    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"model directory {args.model!r} does not exist")
    model: Any = load_fewshot_lm(
        args.model,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        special_tokens=args.special_tokens,
        invariant=not args.batched_tree,
    )
    if args.cache_dir:
        from evalcore.fewshot.cache import CachedLM

        model = CachedLM(model, args.cache_dir, flush_every=args.cache_flush)
    document = None
    if args.tasks or not args.task_file:
        document = _run_fewglue(args, model)
    if args.task_file:
        from evalcore.fewshot.lmeval_runner import run_task_files

        files = run_task_files(
            model,
            args.task_file,
            num_fewshot=args.num_fewshot,
            seed=args.fewshot_seed,
            limit=args.limit,
            sampler=args.sampler,
            chat=args.chat,
            progress=not args.no_progress,
            model_path=str(args.model),
        )
        document = _merge(document, files) if document else files
    assert document is not None
    return document


def _fewglue_common(args: argparse.Namespace) -> dict[str, Any]:
    from evalcore.fewshot.data import resolve_data_dir, task_available
    from evalcore.fewshot.registry import get_task, task_names

    data_dir = resolve_data_dir(args.data_dir)
    if args.tasks in (None, "all"):
        tasks = [n for n in task_names() if task_available(get_task(n), data_dir)]
    else:
        tasks = [get_task(n).name for n in args.tasks.split(",") if n.strip()]
    return {
        "tasks": tasks,
        "splits": args.splits,
        "seed": args.seed,
        "data_dir": data_dir,
        "limit": args.limit,
        "progress": not args.no_progress,
    }


def _run_probe(args: argparse.Namespace) -> dict[str, Any]:
    from evalcore.fewshot.probe import run_probe
    from models_zoo.embedder import MiniLMEmbedder

    if args.model not in PROBE_MODELS:
        raise ValueError(f"the probe runs on {PROBE_MODELS[0]!r} only, got {args.model!r}")
    return run_probe(MiniLMEmbedder(device=args.device), **_fewglue_common(args))


def _run_fewglue(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    from evalcore.fewshot.runner import run_fewshot

    shots = [int(k) for k in args.shots.split(",") if k.strip()]
    common = _fewglue_common(args)
    return run_fewshot(model, shots=shots, model_path=str(args.model), **common)


def _merge(fewglue: dict[str, Any], files: dict[str, Any]) -> dict[str, Any]:
    """One document: FewGLUE tasks under their protocol, task files under theirs."""
    fewglue["tasks"].update(files["tasks"])
    fewglue["protocol"]["task_files"] = files["protocol"]
    return fewglue


if __name__ == "__main__":
    sys.exit(main())
