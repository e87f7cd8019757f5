"""Where a wide scoring call's wall time goes, and what each of its speed-ups gives (device machine).

For RTE at each k, with ``bench/fewshot.py``'s model and prompts: the median wall time of
``FewshotLM.loglikelihood`` (after a warm-up) with every speed-up on, and with each one turned
off in turn (pieces encoding, the last layer's MLP at scored positions only, fused RMSNorm),
then the host stages of one call (encoding, planning) and its CUDA kernel time:

    PYTHONPATH=. python3 bench/fewshot_stages.py --data-dir var/fewglue --shots 0,8

``--device cpu --model-dir /tmp/ladder-bench-llama-test`` runs it on a CPU (wide scorer) as a
smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


@contextlib.contextmanager
def _off(module: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def _median_wall(call: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    call()
    walls = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        call()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="var/fewglue")
    parser.add_argument("--model-dir", default="/tmp/ladder-bench-llama-1b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shots", default="0,8")
    parser.add_argument("--limit", type=int, default=277)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    from fewshot import rte_requests

    from models_zoo import scoring_wide, serving
    from models_zoo.fewshot_lm import FewshotLM

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    served = serving.load(args.model_dir, device=args.device, dtype="bfloat16" if cuda else None)
    served.use_wide_scoring = True
    model = FewshotLM(served)
    splits = served._splits_safely
    no_mlp = lambda *_: contextlib.nullcontext()  # noqa: E731
    no_norms = lambda *_: contextlib.nullcontext()  # noqa: E731
    variants: list[tuple[str, Callable[[], contextlib.AbstractContextManager[Any]]]] = [
        ("all on", contextlib.nullcontext),
        ("whole-text encoding", lambda: _off(served, "_splits_safely", False)),
        ("MLP at every position", lambda: _off(scoring_wide, "mlp_only_at", no_mlp)),
        ("HF RMSNorm", lambda: _off(scoring_wide, "_fused_norms", no_norms)),
    ]
    print(f"pieces encoding available: {splits}; mode {model.scoring['mode']}")
    for shots in [int(k) for k in args.shots.split(",")]:
        pairs, _ = rte_requests(Path(args.data_dir), args.limit, shots)
        print(f"\nk = {shots}, {len(pairs)} requests:")
        for name, variant in variants:
            with variant():
                call = functools.partial(model.loglikelihood, pairs)
                wall = _median_wall(call, args.repeats, sync)
            print(f"| {name} | {wall:.4f} s |", flush=True)
        _stages(served, model, pairs, sync, cuda)


def _stages(served: Any, model: Any, pairs: list[tuple[str, str]], sync: Any, cuda: bool) -> None:
    """One call's host stages (encoding, planning as the wide scorer plans) and kernel time."""
    import torch

    from models_zoo import scoring_wide as sw

    started = time.perf_counter()
    requests = served.encode_pairs(pairs)
    encode = time.perf_counter() - started
    started = time.perf_counter()
    contexts = sw._contexts(sw._sequences(requests))
    groups = sw._prefix_groups(contexts, sw.MIN_PREFIX_TOKENS, sw.MIN_GROUP_SAVING)
    passes = []
    for index, (group, length) in enumerate(groups):
        limits = (model.batch_size, sw.WIDE_TOKEN_BUDGET, sw.WIDE_KEY_BUDGET)
        passes += sw._passes(sw._rows(group, length), index if length else -1, length, limits)
    plan = time.perf_counter() - started
    real = sum(len(row.tokens) for work in passes for row in work.rows)
    padded = sum(len(work.rows) * work.width for work in passes)
    print(
        f"host: encoding {encode:.4f} s, planning {plan:.4f} s; {len(passes)} passes, "
        f"{real} tokens, {padded} padded ({1 - real / padded:.1%} padding)"
    )
    if not cuda:
        return
    from fewshot_profile import profiled_call

    sync()
    wall, gpu, events = profiled_call(model, pairs)
    print(f"profiled call: wall {wall:.4f} s, CUDA kernels {gpu:.4f} s")
    print(events.table(sort_by="self_cuda_time_total", row_limit=10, max_name_column_width=50))
    del torch


if __name__ == "__main__":
    main()
