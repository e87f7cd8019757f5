"""The submission pipeline's few-shot step for the 1B Llama, without Django (device machine).

``bench/gpu_pipeline.py`` runs the whole service; its 1B few-shot step (RTE, CB, COPA x 1 split
x 32 docs, ``FewshotLM(served)`` as ``submissions.pipeline.fewshot_model`` builds it) took 136 s
on an H100 (bench/RESULTS.md, issue 19). This script writes the same checkpoint
(``gpu_pipeline.write_checkpoints``: Llama-3.2-1B's shape, 128k vocabulary, random bf16
weights) and times the same calls, task by task, as ``submissions.pipeline.run_fewshot_tasks``
makes them, with the scoring mode the served model picks on CUDA:

    PYTHONPATH=. python3 bench/gpu_fewshot_step.py --data-dir var/fewglue

``--model gpu-longnet`` times the zoo LongNet's step (one input per pass, ``plain_single``);
``--checkpoints DIR`` writes the checkpoints there once and reuses them, so that two source
trees (``PYTHONPATH=OTHER_TREE``) score the same weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks", default="rte,cb,copa")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--splits", type=int, default=1)
    parser.add_argument(
        "--model", default="gpu-llama-1b", help="gpu-llama-1b, or gpu-longnet (the zoo model)"
    )
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="reuse (or first write) write_checkpoints' folder here, e.g. to time two trees",
    )
    parser.add_argument("--warm-up", action="store_true", help="run the first task once first")
    args = parser.parse_args()

    import torch
    from gpu_pipeline import write_checkpoints

    from evalcore.fewshot.runner import run_fewshot
    from models_zoo import serving
    from models_zoo.fewshot_lm import FewshotLM

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.checkpoints or scratch)
        if not (root / args.model / "config.json").is_file():
            write_checkpoints(root)
        served = serving.load(root / args.model, device="cuda")
        model = FewshotLM(served)
        print(f"mode {model.scoring['mode']}, rows per pass {model.batch_size}", flush=True)
        if args.warm_up:  # first-use costs (kernel selection, allocator) out of the timings
            first = args.tasks.split(",")[0]
            run_fewshot(model, tasks=[first], splits=1, seed=0, data_dir=args.data_dir, limit=2)
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for name in args.tasks.split(","):
            before, tokens = time.perf_counter(), model.tokens_processed
            requests = model.requests_scored
            document = run_fewshot(
                model, tasks=[name], splits=args.splits, seed=0, data_dir=args.data_dir,
                limit=args.limit,
            )  # fmt: skip
            seconds = time.perf_counter() - before
            count = model.requests_scored - requests
            accuracy = document["tasks"][name]["score"]
            print(
                f"{name}: {count} requests in {seconds:.2f} s = {count / seconds:.0f}/s, "
                f"{model.tokens_processed - tokens} tokens; {accuracy}",
                flush=True,
            )
        wall = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(
            f"few-shot step: {model.requests_scored} requests in {wall:.2f} s = "
            f"{model.requests_scored / wall:.0f}/s; {model.tokens_processed} tokens = "
            f"{model.tokens_processed / wall:.0f}/s; GPU peak {peak:.0f} MiB"
        )


if __name__ == "__main__":
    main()
