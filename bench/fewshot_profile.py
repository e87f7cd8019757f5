"""Where the GPU time of one wide scoring call goes (device machine): torch.profiler's top CUDA
kernels for RTE at the given k with ``bench/fewshot.py``'s model and prompts.

    PYTHONPATH=. python3 bench/fewshot_profile.py --data-dir var/fewglue --shots 0,8
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="var/fewglue")
    parser.add_argument("--model-dir", default="/tmp/ladder-bench-llama-1b")
    parser.add_argument("--shots", default="0,8")
    parser.add_argument("--limit", type=int, default=277)
    args = parser.parse_args()

    import torch
    from fewshot import rte_requests

    from models_zoo import serving
    from models_zoo.fewshot_lm import FewshotLM

    served = serving.load(args.model_dir, device="cuda", dtype="bfloat16")
    model = FewshotLM(served)
    for shots in [int(k) for k in args.shots.split(",")]:
        pairs, _ = rte_requests(Path(args.data_dir), args.limit, shots)
        model.loglikelihood(pairs)  # warm-up
        torch.cuda.synchronize()
        wall, gpu, events = profiled_call(model, pairs)
        print(f"\nk = {shots}: wall {wall:.3f} s, GPU kernels {gpu:.3f} s")
        print(events.table(sort_by="self_cuda_time_total", row_limit=14, max_name_column_width=60))


def profiled_call(model: Any, pairs: Sequence[tuple[str, str]]) -> tuple[float, float, Any]:
    """One ``model.loglikelihood(pairs)`` under torch.profiler (CPU + CUDA): its wall seconds,
    the seconds of CUDA kernels, and the profiler's key averages."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        model.loglikelihood(pairs)
        wall = time.perf_counter() - started
    events = prof.key_averages()
    return wall, sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e6, events


if __name__ == "__main__":
    main()
