"""Dilated vs dense attention on one GPU: time and peak memory (bf16, causal, LongNet schedule).

    python bench/attention.py                       # lengths 8K..1M, writes a Markdown table
    python bench/attention.py --lengths 8192 32768 --out results.md

Implementations timed (B=1, H=16, D=128 by default):
- dense: ``F.scaled_dot_product_attention(is_causal=True)`` forced to cuDNN (PyTorch's fastest
  fused backend on the H200) through ``torch.nn.attention.sdpa_kernel``;
- plain dilated: the model zoo's gather path (gather the strided rows, PyTorch's fused kernel
  with log-sum-exp per branch, scatter and merge in fp32) - ``models_zoo.attention``'s private
  ``_branch_blocks``/``_combine_branches``, because its public entry dispatches to the kernel;
- fused dilated: ``models_zoo.kernels.dilated.fused_dilated_attention`` (Triton).

Time: median of ``triton.testing.do_bench``. Memory: peak allocated during one call minus what was
allocated before it (the inputs), so it includes the output (2·N·H·D bytes).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from models_zoo import attention as zoo_attention  # noqa: E402
from models_zoo.kernels.dilated import fused_dilated_attention  # noqa: E402

SEGMENTS = (2048, 4096, 8192, 16384, 32768)  # LongNet section 4.2 LM schedule
RATES = (1, 2, 4, 6, 12)
LENGTHS = (8192, 32768, 131072, 262144, 1048576)
SWEEP = (
    {"block_m": 128, "block_n": 64, "num_warps": 8, "num_stages": 3},
    {"block_m": 128, "block_n": 128, "num_warps": 8, "num_stages": 3},
    {"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 3},
    {"block_m": 128, "block_n": 64, "num_warps": 4, "num_stages": 4},
)


def dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal dense attention through cuDNN; q, k, v ``(B, N, H, D)``."""
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )  # (B, H, N, D)
    return out.transpose(1, 2)


def plain_dilated(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The zoo's gather / fused-with-LSE / scatter / fp32-merge path, bypassing the kernel."""
    partials = [zoo_attention._branch_blocks(q, k, v, w, r, True) for w, r in zip(SEGMENTS, RATES)]
    return zoo_attention._combine_branches(partials).to(q.dtype)


def fused(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, config: dict | None = None
) -> torch.Tensor:
    return fused_dilated_attention(
        q, k, v, segment_lengths=SEGMENTS, dilation_rates=RATES, config=config
    )


def dilated_flops(n: int, heads: int, dim: int) -> float:
    """LongNet Eq. 16-18 with w capped at n: 2·N·D·Σ w/r² per head (QK and PV, causal half)."""
    return sum(2.0 * n * dim * min(w, n) / r**2 for w, r in zip(SEGMENTS, RATES)) * heads


def measure(fn: Callable[[], torch.Tensor], slow: bool = False) -> tuple[float, float]:
    """(median ms, peak extra GiB) of ``fn``."""
    import triton.testing

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    extra = (torch.cuda.max_memory_allocated() - before) / 2**30
    if slow:  # one timed call (dense at 1M takes ~10 s)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end), extra
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"), extra


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def sweep_configs(n: int, heads: int, dim: int) -> dict:
    q, k, v = (torch.randn(1, n, heads, dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    best, best_ms = SWEEP[0], float("inf")
    for config in SWEEP:
        ms, _ = measure(lambda c=config: fused(q, k, v, c))
        print(f"sweep N={n} {config}: {ms:.3f} ms", flush=True)
        if ms < best_ms:
            best, best_ms = config, ms
    return best


def run(lengths: list[int], heads: int, dim: int, skip_plain_above: int) -> list[str]:
    """Time every implementation at every length; returns Markdown table rows."""
    config = sweep_configs(min(262144, max(lengths)), heads, dim)
    print(f"chosen config {config}", flush=True)
    return [bench_length(n, heads, dim, config, n <= skip_plain_above) for n in lengths]


def bench_length(n: int, heads: int, dim: int, config: dict, with_plain: bool) -> str:
    """One table row at length ``n`` (inputs are freed on return)."""
    gen = torch.Generator(device="cuda").manual_seed(n)
    q, k, v = (
        torch.randn(1, n, heads, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        for _ in range(3)
    )
    fused_ms, fused_gib = measure(lambda: fused(q, k, v, config))
    out = fused(q, k, v, config)
    plain_ms = plain_gib = error = float("nan")
    if with_plain:
        try:
            plain_ms, plain_gib = measure(lambda: plain_dilated(q, k, v))
            error = relative_error(out, plain_dilated(q, k, v))
        except torch.OutOfMemoryError:
            print(f"plain dilated OOM at N={n}", flush=True)
        torch.cuda.empty_cache()
    del out
    dense_ms, dense_gib = measure(lambda: dense(q, k, v), slow=n >= 1 << 20)
    tflops = dilated_flops(n, heads, dim) / fused_ms / 1e9
    row = (
        f"| {n // 1024}K | {dense_ms:.2f} | {dense_gib:.2f} | {plain_ms:.2f} | {plain_gib:.2f} "
        f"| {fused_ms:.2f} | {fused_gib:.2f} | {tflops:.0f} | {dense_ms / fused_ms:.1f}x "
        f"| {'fused' if fused_ms <= dense_ms else 'dense'} | {error:.1e} |"
    )
    print(row, flush=True)
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--skip-plain-above", type=int, default=1 << 20)
    parser.add_argument("--out", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args()
    header = [
        f"{datetime.date.today()} on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"bf16, B=1, H={args.heads}, D={args.head_dim}, causal, w={SEGMENTS}, r={RATES}",
        "",
        "| N | dense cuDNN ms | dense extra GiB | plain dilated ms | plain extra GiB "
        "| fused ms | fused extra GiB | fused TFLOP/s | dense/fused | faster | rel. err vs plain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = run(args.lengths, args.heads, args.head_dim, args.skip_plain_above)
    table = "\n".join(header + rows) + "\n"
    print(table)
    if args.out is not None:
        with args.out.open("a") as handle:
            handle.write(table)


if __name__ == "__main__":
    main()
