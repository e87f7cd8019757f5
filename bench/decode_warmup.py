"""First-use cost of the fast decoder in a fresh process, with and without warm-up at load.

    python bench/decode_warmup.py --size 1b

Each scenario runs in a fresh Python process (as a new Celery worker would) on a random-weight
Llama of ``--size`` (bench/serving.py's shapes, bf16, CUDA): it times the first
``generate_fast`` call (batch 1, 64 prompt + 32 new tokens, as an arena answer), the second
identical call, and a first call at another shape (batch 8). Scenarios:
- ``cold``: empty Triton cache directory, no warm-up (what the GPU pipeline's arena step saw);
- ``warm-up``: empty Triton cache, ``fast_decode.warm_up(model)`` first (what ``serving.load``
  now does), timed on its own;
- ``disk-cache``: the Triton cache directory the ``cold`` run filled, no warm-up (a later worker
  process on the same machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
import torch
from serving import build_model
from models_zoo import fast_decode

model = build_model(0, {size!r})
torch.cuda.synchronize()
result = {{}}
if {warm}:
    result["warm_up_s"] = fast_decode.warm_up(model)

def timed(batch, new):
    ids = torch.randint(1, model.config.vocab_size, (batch, 64), device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    fast_decode.generate_fast(model, ids, max_new_tokens=new)
    torch.cuda.synchronize()
    return time.perf_counter() - start

result["first_call_s"] = timed(1, 32)
result["second_call_s"] = timed(1, 32)
result["first_batch8_call_s"] = timed(8, 32)
print("RESULT " + json.dumps(result))
"""


def scenario(size: str, warm: bool, cache: str) -> dict[str, float]:
    code = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), size=size, warm=warm)
    env = {**os.environ, "TRITON_CACHE_DIR": cache}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["process_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1b")
    args = parser.parse_args()
    print(f"| {args.size} scenario | warm_up s | first call s | second call s | first batch-8 s "
          "| process s |", flush=True)  # fmt: skip
    print("|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as fresh:
        for name, warm, cache in (("cold", False, cold), ("warm-up", True, fresh),
                                  ("disk-cache", False, cold)):  # fmt: skip
            r = scenario(args.size, warm, cache)
            print(
                f"| {name} | {r.get('warm_up_s', 0.0):.2f} | {r['first_call_s']:.3f} | "
                f"{r['second_call_s']:.3f} | {r['first_batch8_call_s']:.3f} | "
                f"{r['process_s']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
