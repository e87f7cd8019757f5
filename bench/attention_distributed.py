"""Sequence-parallel dilated attention over 1-8 GPUs: time, peak memory, bytes gathered, scaling.

    python bench/attention_distributed.py                 # NCCL, 1/2/4/8 GPUs (as many as exist)
    python bench/attention_distributed.py --worlds 1 8 --totals 1048576 --shares 1048576
    python bench/attention_distributed.py --backend gloo --device cpu --quick   # CPU functional run

One process per rank (``torch.multiprocessing`` spawn; NCCL with NVLink multicast off: the
children inherit NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and
NVSHMEM_DISABLE_NVLS=1, see the device notes' KINDS.md). Each rank holds ``ceil(N / world)``
tokens of q, k, v (B = 1, H = 16, D = 128, bf16) and runs one causal forward of
``models_zoo.distributed.sequence_parallel_dilated_attention``.

Schedules:
- ``lm``: the paper's LM schedule (section 4.2), w = (2048 ... 32768), r = (1, 2, 4, 6, 12). At a
  per-GPU share of 32K tokens or more every branch is local and nothing is gathered;
- ``lm-to-n``: ``lm`` continued until w >= N (w doubling, r doubling from 12, so w / r stays
  2731), as in the paper's scaling experiment whose longest segment spans the sequence; branches
  longer than a GPU's share are all-gathered (a rank sends ``share / r`` rows per head of each).

Columns: time per forward (median over repeats of the slowest rank), peak memory per GPU (max
over ranks of ``torch.cuda.max_memory_allocated``, inputs included), bytes all-gathered per rank
(sent: the rank's dilated k and v rows; received: (world - 1) x sent), scaling efficiency =
time on 1 GPU / time on ``world`` GPUs at the same per-GPU share, and the largest absolute
difference from single-device ``dilated_attention`` at a short check length (``lm-to-n``, so
local and gathered branches both run). ``--quick`` shrinks everything (H = 4, D = 16, fp32,
schedules / 64) for a functional run on CPU processes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from models_zoo.attention import dilated_attention  # noqa: E402
from models_zoo.distributed import (  # noqa: E402
    GatherStats,
    sequence_parallel_dilated_attention,
    shard_bounds,
    split_branches,
)

SEGMENTS = (2048, 4096, 8192, 16384, 32768)  # LongNet section 4.2 LM schedule
RATES = (1, 2, 4, 6, 12)
TOTALS = (1 << 20, 1 << 22, 1 << 24, 1 << 25)  # 32M: 8x what one 80 GB GPU holds
SHARES = (1 << 20,)  # per-GPU share for the scaling column
CHECK_SHARE = 8192  # per-rank tokens of the correctness check (divided by 64 with --quick)
NO_MULTICAST = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


@dataclass(frozen=True)
class Setup:
    backend: str
    device: str
    heads: int
    dim: int
    dtype: str
    scale: int  # schedules are divided by this (64 with --quick)
    repeats: int
    schedules: tuple[str, ...]
    totals: tuple[int, ...]
    shares: tuple[int, ...]


@dataclass
class Row:
    schedule: str
    world: int
    total: int
    share: int
    gathered: int
    branches: int
    ms: float
    peak_gib: float
    sent_mib: float
    received_mib: float


def schedule(name: str, total: int, scale: int) -> tuple[list[int], list[int]]:
    """(segment_lengths, dilation_rates) of a named schedule for ``total`` tokens."""
    segments, rates = [w // scale for w in SEGMENTS], list(RATES)
    if name == "lm-to-n":
        while segments[-1] < total:
            segments.append(segments[-1] * 2)
            rates.append(rates[-1] * 2)
    elif name != "lm":
        raise ValueError(f"unknown schedule {name!r}; use 'lm' or 'lm-to-n'")
    return segments, rates


def estimated_bytes(setup: Setup, name: str, total: int, world: int) -> int:
    """A rough upper bound of one rank's memory (inputs, output, gathered rows, score blocks)."""
    element = torch.empty((), dtype=getattr(torch, setup.dtype)).element_size()
    share, heads, dim = -(-total // world), setup.heads, setup.dim
    need = 4 * share * heads * dim * element + 3 * share * heads * 4
    segments, rates = schedule(name, total, setup.scale)
    for w, r in split_branches(total, world, segments, rates)[1]:
        rows, keys = -(-share // r) + 1, -(-w // r)
        blocks = 2 if w >= share else share // w + 2
        need += 4 * world * rows * heads * dim * element  # the gathered rows and their copy
        need += 3 * heads * blocks * min(rows, keys) * keys * 4  # fp32 scores and softmax
        need += 2 * heads * blocks * keys * dim * element + 2 * share * heads * 4
    return need


def device_of(setup: Setup, rank: int) -> torch.device:
    return torch.device(f"cuda:{rank}") if setup.device == "cuda" else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> float:
    """Median over ``repeats`` of the slowest rank's seconds per call (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        dist.barrier()
        start = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = torch.tensor([time.perf_counter() - start], device=device)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        times.append(float(elapsed))
    return statistics.median(times)


def random_shard(setup: Setup, total: int, world: int, rank: int, seed: int) -> list[torch.Tensor]:
    device = device_of(setup, rank)
    start, stop = shard_bounds(total, world, rank)
    generator = torch.Generator(device=device).manual_seed(seed * 1009 + rank)
    shape = (1, stop - start, setup.heads, setup.dim)
    dtype = getattr(torch, setup.dtype)
    return [torch.randn(shape, device=device, dtype=dtype, generator=generator) for _ in range(3)]


def check_error(setup: Setup, world: int, rank: int) -> float:
    """Largest |sequence-parallel - single-device| over all ranks at a short ``lm-to-n`` length."""
    device = device_of(setup, rank)
    total = world * CHECK_SHARE // setup.scale
    segments, rates = schedule("lm-to-n", total, setup.scale)
    generator = torch.Generator(device=device).manual_seed(total)
    shape = (1, total, setup.heads, setup.dim)
    dtype = getattr(torch, setup.dtype)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=generator) for _ in "qkv")
    start, stop = shard_bounds(total, world, rank)
    with torch.no_grad():
        expected = dilated_attention(q, k, v, segment_lengths=segments, dilation_rates=rates)
        out = sequence_parallel_dilated_attention(
            q[:, start:stop], k[:, start:stop], v[:, start:stop],
            seq_len=total, segment_lengths=segments, dilation_rates=rates,
        )  # fmt: skip
    error = (out.float() - expected[:, start:stop].float()).abs().max().reshape(1)
    dist.all_reduce(error, op=dist.ReduceOp.MAX)
    return float(error)


def measure(setup: Setup, name: str, total: int, world: int, rank: int) -> Row:
    """One table row: every rank runs the forward; the numbers are the slowest rank's."""
    device = device_of(setup, rank)
    segments, rates = schedule(name, total, setup.scale)
    q, k, v = random_shard(setup, total, world, rank, seed=total)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stats = GatherStats()
    with torch.no_grad():
        sequence_parallel_dilated_attention(
            q, k, v, seq_len=total, segment_lengths=segments, dilation_rates=rates, stats=stats
        )

        def forward() -> torch.Tensor:
            return sequence_parallel_dilated_attention(
                q, k, v, seq_len=total, segment_lengths=segments, dilation_rates=rates
            )

        seconds = time_calls(forward, device, setup.repeats)
    peak = torch.tensor(
        [torch.cuda.max_memory_allocated(device) if device.type == "cuda" else math.nan],
        device=device,
    )
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    return Row(
        schedule=name, world=world, total=total, share=-(-total // world),
        gathered=len(stats.gathered), branches=len(segments), ms=seconds * 1e3,
        peak_gib=float(peak) / 2**30, sent_mib=stats.bytes_sent / 2**20,
        received_mib=stats.bytes_received / 2**20,
    )  # fmt: skip


def configs(setup: Setup, world: int) -> list[tuple[str, int]]:
    totals = sorted(set(setup.totals) | {share * world for share in setup.shares})
    return [(name, total) for name in setup.schedules for total in totals if total >= world]


def worker(rank: int, world: int, port: int, setup: Setup, out_path: str) -> None:
    """One rank: join the group, check against one device, then measure every config."""
    device = device_of(setup, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        # A functional run: one thread per rank, so ranks do not spin-wait on shared cores.
        torch.set_num_threads(1)
    dist.init_process_group(
        setup.backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        results: list[dict[str, object]] = [{"check_error": check_error(setup, world, rank)}]
        memory = (
            torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else 0
        )
        for name, total in configs(setup, world):
            if memory and estimated_bytes(setup, name, total, world) > 0.9 * memory:
                results.append({"skipped": [name, total]})
                continue
            results.append(asdict(measure(setup, name, total, world, rank)))
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if rank == 0:
            Path(out_path).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_world(setup: Setup, world: int) -> list[dict[str, object]]:
    """Spawn ``world`` ranks and return rank 0's results."""
    os.environ.update(NO_MULTICAST)  # inherited by the spawned ranks
    with tempfile.TemporaryDirectory() as scratch:
        out_path = str(Path(scratch) / "results.json")
        mp.spawn(worker, args=(world, free_port(), setup, out_path), nprocs=world, join=True)
        results: list[dict[str, object]] = json.loads(Path(out_path).read_text())
        return results


def table(setup: Setup, rows: list[Row], checks: dict[int, float], skipped: list[str]) -> str:
    device = torch.cuda.get_device_name() if setup.device == "cuda" else "CPU processes"
    baseline = {(row.schedule, row.share): row.ms for row in rows if row.world == 1}
    lines = [
        f"{datetime.date.today()} on {device}, torch {torch.__version__}, backend {setup.backend}, "
        f"{setup.dtype}, B=1, H={setup.heads}, D={setup.dim}, causal, repeats {setup.repeats}, "
        f"schedules / {setup.scale}",
        "",
        "| schedule | ranks | total N | per-rank share | gathered / branches | ms per forward "
        "| peak GiB per rank | sent MiB per rank | received MiB per rank | efficiency vs 1 rank |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r.schedule, r.total, r.world)):
        one = baseline.get((row.schedule, row.share))
        efficiency = f"{one / row.ms:.2f}" if one is not None else "-"
        peak = "-" if math.isnan(row.peak_gib) else f"{row.peak_gib:.2f}"  # CPU: not tracked
        lines.append(
            f"| {row.schedule} | {row.world} | {row.total:,} | {row.share:,} "
            f"| {row.gathered} / {row.branches} | {row.ms:.2f} | {peak} "
            f"| {row.sent_mib:.3f} | {row.received_mib:.3f} | {efficiency} |"
        )
    lines.append("")
    lines.append(
        "Max abs difference from single-device dilated_attention (lm-to-n, shares of "
        f"{CHECK_SHARE // setup.scale} tokens): "
        + ", ".join(f"{world} ranks {error:.1e}" for world, error in sorted(checks.items()))
    )
    if skipped:
        lines.append("Skipped (estimated memory over 90 % of a GPU): " + ", ".join(skipped))
    return "\n".join(lines) + "\n"


def parse_setup(argv: list[str] | None = None) -> tuple[Setup, list[int], Path | None]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["nccl", "gloo"], default="nccl")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU functional run)")
    parser.add_argument("--worlds", type=int, nargs="+", default=None)
    parser.add_argument("--totals", type=int, nargs="+", default=None)
    parser.add_argument("--shares", type=int, nargs="+", default=None)
    parser.add_argument("--schedules", nargs="+", default=["lm", "lm-to-n"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    scale = 64 if quick else 1  # schedules
    shrink = 1024 if quick else 1  # lengths: 1M -> 1K
    default_worlds = [1, 2, 4] if quick else [1, 2, 4, 8]
    if args.device == "cuda":
        default_worlds = [w for w in default_worlds if w <= torch.cuda.device_count()]
    setup = Setup(
        backend=args.backend, device=args.device,
        heads=4 if quick else 16, dim=16 if quick else 128,
        dtype="float32" if quick else "bfloat16", scale=scale,
        repeats=args.repeats or (3 if quick else 10),
        schedules=tuple(args.schedules),
        totals=tuple(args.totals or [total // shrink for total in TOTALS[: 3 if quick else 4]]),
        shares=tuple(args.shares or [share // shrink for share in SHARES]),
    )  # fmt: skip
    return setup, args.worlds or default_worlds, args.out


def main() -> None:
    setup, worlds, out = parse_setup()
    rows: list[Row] = []
    checks: dict[int, float] = {}
    skipped: list[str] = []
    for world in worlds:
        started = time.perf_counter()
        for result in run_world(setup, world):
            if "check_error" in result:
                checks[world] = float(result["check_error"])  # type: ignore[arg-type]
            elif "skipped" in result:
                skipped.append(f"{result['skipped']} on {world}")
            else:
                rows.append(Row(**result))  # type: ignore[arg-type]
        print(f"{world} ranks done in {time.perf_counter() - started:.1f} s", flush=True)
    text = table(setup, rows, checks, skipped)
    print(text)
    if out is not None:
        with out.open("a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
