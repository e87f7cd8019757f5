"""Sequence-parallel dilated attention on CPU processes (gloo) vs one process and the reference.

Spawning a gloo group costs seconds, so each world size (2 and 4) is spawned once and its ranks
run every check, writing the largest errors and the gather statistics to a JSON file per rank;
the tests below read those files.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models_zoo.attention import dilated_attention, dilated_attention_reference
from models_zoo.distributed import (
    GatherStats,
    _count_selected,
    sequence_parallel_dilated_attention,
    sequence_parallel_forward,
    shard_bounds,
    split_branches,
)
from tests.conftest import free_port

# (N, segment_lengths, dilation_rates, causal): odd N, shards straddling segments, r not
# dividing w (3 and 8, 6 and 16), w > N, a gathered r = 1 branch, a local-only schedule, and a
# schedule whose r = 1 branch is not the shortest.
CASES = [
    (45, (8, 16, 32), (1, 2, 4), True),
    (45, (5, 8, 20), (1, 3, 4), False),
    (53, (4, 16, 100), (1, 6, 2), True),
    (61, (16,), (1,), True),
    (50, (3, 40), (2, 1), True),
    (37, (7,), (1,), False),
]
HEADS, HEAD_DIM = 6, 8

if TYPE_CHECKING:
    from models_zoo.dilated_transformer import LongNetForCausalLM
BYTES_CASE = (64, (8, 32, 64), (1, 2, 4))  # N divisible by world · r: exact row counts


def random_qkv(N: int, seed: int, count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, N, HEADS, HEAD_DIM, generator=generator) for _ in range(count)]


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def check_attention(rank: int, world: int) -> dict[str, float]:
    errors = {"fast": 0.0, "reference": 0.0}
    for N, segments, rates, causal in CASES:
        q, k, v = random_qkv(N, seed=N)
        start, stop = shard_bounds(N, world, rank)
        schedule = {"segment_lengths": segments, "dilation_rates": rates, "causal": causal}
        out = sequence_parallel_dilated_attention(
            q[:, start:stop], k[:, start:stop], v[:, start:stop], seq_len=N, **schedule
        )
        fast = dilated_attention(q, k, v, **schedule)[:, start:stop]
        reference = dilated_attention_reference(q, k, v, **schedule)[:, start:stop]
        errors["fast"] = max(errors["fast"], max_error(out, fast))
        errors["reference"] = max(errors["reference"], max_error(out, reference))
    return errors


def check_gradients(rank: int, world: int) -> float:
    N, segments, rates = 45, (8, 16, 32), (1, 2, 4)
    q, k, v, weight = random_qkv(N, seed=7, count=4)
    full = [x.clone().requires_grad_() for x in (q, k, v)]
    out = dilated_attention(*full, segment_lengths=segments, dilation_rates=rates)
    (out * weight).sum().backward()
    start, stop = shard_bounds(N, world, rank)
    shard = [x[:, start:stop].clone().requires_grad_() for x in (q, k, v)]
    out = sequence_parallel_dilated_attention(
        *shard, seq_len=N, segment_lengths=segments, dilation_rates=rates
    )
    (out * weight[:, start:stop]).sum().backward()
    return max(max_error(s.grad, f.grad[:, start:stop]) for s, f in zip(shard, full))  # type: ignore[arg-type]


def tiny_longnet() -> LongNetForCausalLM:
    from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM

    torch.manual_seed(0)
    config = LongNetConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, segment_lengths=[8, 16, 32], dilation_rates=[1, 2, 4],
    )  # fmt: skip
    return LongNetForCausalLM(config).eval()


def check_model(rank: int, world: int) -> dict[str, Any]:
    N = 45
    model = tiny_longnet()
    ids = torch.randint(0, 64, (2, N), generator=torch.Generator().manual_seed(3))
    start, stop = shard_bounds(N, world, rank)
    stats = GatherStats()
    with torch.no_grad():
        expected = model(ids, use_cache=False).logits[:, start:stop]
        logits = sequence_parallel_forward(model, ids[:, start:stop], seq_len=N, stats=stats)
        after = model(ids, use_cache=False).logits[:, start:stop]
    return {
        "error": max_error(logits, expected),
        "restored_error": max_error(after, expected),
        "calls": stats.calls,
    }


def check_bytes(rank: int, world: int) -> dict[str, Any]:
    N, segments, rates = BYTES_CASE
    start, stop = shard_bounds(N, world, rank)
    q, k, v = (x[:, start:stop] for x in random_qkv(N, seed=1))
    stats = GatherStats()
    sequence_parallel_dilated_attention(
        q, k, v, seq_len=N, segment_lengths=segments, dilation_rates=rates, stats=stats
    )
    return {
        "sent": stats.bytes_sent,
        "received": stats.bytes_received,
        "gathered": stats.gathered,
        "kv_bytes": 2 * k.numel() * k.element_size(),
    }


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        results = {
            "attention": check_attention(rank, world),
            "gradients": check_gradients(rank, world),
            "model": check_model(rank, world),
            "bytes": check_bytes(rank, world),
        }
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))


@pytest.fixture(scope="module", params=[2, 4], ids=["world2", "world4"])
def ranks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Each rank's results for one gloo group of ``world`` processes."""
    world = request.param
    out_dir = tmp_path_factory.mktemp(f"world{world}")
    # A fork server that has imported this module once starts every rank: each freshly spawned
    # process would import torch and transformers again (over 10 s each on a loaded machine).
    # The server itself only imports, so its forks start clean (no threads, no process group).
    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__])
    mp.start_processes(
        worker, args=(world, free_port(), str(out_dir)), nprocs=world, start_method="forkserver"
    )
    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(world)]


def test_sharded_attention_equals_one_process_and_reference_at_odd_lengths(
    ranks: list[Any],
) -> None:
    for result in ranks:
        assert result["attention"]["fast"] <= 1e-5
        assert result["attention"]["reference"] <= 1e-5


def test_sharded_gradients_equal_one_process_gradients(ranks: list[Any]) -> None:
    assert max(result["gradients"] for result in ranks) <= 1e-5


def test_model_forward_equals_one_process_forward_and_restores_attention(
    ranks: list[Any],
) -> None:
    for result in ranks:
        assert result["model"]["error"] <= 1e-5
        assert result["model"]["restored_error"] == 0.0
        assert result["model"]["calls"] == 2  # one attention call per layer


def test_only_dilated_rows_of_k_and_v_are_all_gathered(ranks: list[Any]) -> None:
    N, segments, rates = BYTES_CASE
    world = len(ranks)
    share = N // world
    # Branches whose segment is longer than a rank's share; each rank sends N/(world·r) rows.
    expected = [(w, r, share // r) for w, r in zip(segments, rates) if w > share]
    row_bytes = 2 * 2 * HEADS * HEAD_DIM * 4  # k and v, B = 2, fp32
    for result in ranks:
        sent = result["bytes"]["sent"]
        assert [tuple(branch) for branch in result["bytes"]["gathered"]] == expected
        assert sent == row_bytes * sum(rows for _, _, rows in expected)
        assert result["bytes"]["received"] == (world - 1) * sent
        # The share 1/r of this rank's k and v per gathered branch, never all of it.
        kv_bytes = result["bytes"]["kv_bytes"]
        assert sent == pytest.approx(kv_bytes * sum(1 / r for _, r, _ in expected))


def test_one_process_without_a_group_is_single_device_attention() -> None:
    q, k, v = random_qkv(45, seed=2)
    schedule = {"segment_lengths": (8, 16, 32), "dilation_rates": (1, 2, 4)}
    out = sequence_parallel_dilated_attention(q, k, v, seq_len=45, **schedule)
    torch.testing.assert_close(out, dilated_attention(q, k, v, **schedule), atol=0, rtol=0)
    model = tiny_longnet()
    ids = torch.randint(0, 64, (1, 21))
    with torch.no_grad():
        logits = sequence_parallel_forward(model, ids, seq_len=21)
        torch.testing.assert_close(logits, model(ids, use_cache=False).logits)


def test_shard_bounds_split_ceil_of_n_over_world_and_reject_empty_ranks() -> None:
    bounds = [shard_bounds(45, 4, rank) for rank in range(4)]
    assert bounds == [(0, 12), (12, 24), (24, 36), (36, 45)]
    with pytest.raises(ValueError, match="seq_len 5 cannot be split over 4 ranks"):
        shard_bounds(5, 4, 0)
    with pytest.raises(ValueError, match="rank 4 must be in"):
        shard_bounds(45, 4, 4)


def test_branches_stay_local_when_shard_boundaries_are_segment_boundaries() -> None:
    local, gathered = split_branches(64, 4, (8, 16, 32, 128), (1, 2, 4, 8))
    assert local == [(8, 1), (16, 2)]
    assert gathered == [(32, 4), (64, 8)]  # w capped at N
    assert split_branches(64, 1, (8, 128), (1, 2)) == ([(8, 1), (64, 2)], [])


@pytest.mark.parametrize(("w", "r"), [(8, 3), (6, 1), (5, 8), (16, 4)])
def test_selected_row_count_matches_brute_force(w: int, r: int) -> None:
    offsets = torch.arange(6) % r
    x = torch.arange(40)[:, None]
    counted = _count_selected(x, offsets[None, :], w, r)  # (40, 6)
    for position in range(40):
        for head, offset in enumerate(offsets.tolist()):
            brute = sum((p % w) % r == offset for p in range(position))
            assert int(counted[position, head]) == brute


def test_wrong_shard_shape_raises_value_error_quoting_shapes() -> None:
    q, k, v = random_qkv(45, seed=0)
    with pytest.raises(ValueError, match=r"\(batch, 45, heads, head_dim\) on rank 0 of 1"):
        sequence_parallel_dilated_attention(
            q[:, :40], k[:, :40], v[:, :40], seq_len=45, segment_lengths=(8,), dilation_rates=(1,)
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rates", [(1, 2, 4), (2, 4)], ids=["with-r1", "without-r1"])
def test_fused_kernel_lse_equals_log_sum_exp_of_the_branches(rates: tuple[int, ...]) -> None:
    """The local half of a sequence-parallel call: the kernel's LSE, -inf where nothing covers."""
    from models_zoo.attention import _branch_blocks
    from models_zoo.kernels.dilated import fused_dilated_attention_with_lse

    generator = torch.Generator(device="cuda").manual_seed(4)
    q, k, v = (torch.randn(1, 300, 4, 32, device="cuda", generator=generator) for _ in "qkv")
    segments = (64, 128, 256)[-len(rates) :]
    out, lse = fused_dilated_attention_with_lse(
        q, k, v, segment_lengths=segments, dilation_rates=rates
    )
    with torch.no_grad():
        branches = [_branch_blocks(q, k, v, w, r, True) for w, r in zip(segments, rates)]
    expected = torch.logsumexp(torch.stack([branch_lse for _, branch_lse in branches]), dim=0)
    covered = torch.isfinite(expected)
    assert torch.equal(covered, torch.isfinite(lse))
    torch.testing.assert_close(lse[covered], expected[covered], atol=1e-4, rtol=1e-4)
    assert out.shape == q.shape
