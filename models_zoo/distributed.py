"""Sequence-parallel LongNet dilated attention (Ding et al., 2023, arXiv:2307.02486, section 3).

One sequence of N tokens is split over the ranks of a process group: rank i holds the contiguous
tokens ``[i·L, min((i+1)·L, N))`` of q, k and v, with ``L = ceil(N / world)`` (the last rank may
hold fewer). The output on each rank equals the rows of single-device
:func:`models_zoo.attention.dilated_attention` for its tokens: same segments (aligned to global
positions), the paper's head offset ``h mod r``, causality inside each compacted segment, masks
(not zero padding) for short segments and ``r`` not dividing ``w``, and the log-sum-exp mix.

Per branch (w, r), with w capped at N as on one device:
- **local** when every shard boundary is a multiple of w (``L % w == 0``): each segment lies in
  one rank, so the rank runs the single-device path on its shard (the fused Triton kernel on
  CUDA, PyTorch's gather path otherwise) and no bytes move;
- **gathered** otherwise: every rank sparsifies first, keeping for each head only the rows its
  branch selects (about ``L / r`` of them), and all-gathers those k and v rows (paper figure 4).
  Its queries then attend the rows of their own segment. The all-gathers are started before the
  local branches run, so they overlap with that work.

The branches are merged per (row, head) by log-sum-exp, as on one device.

Deviations from the paper (section 3.1, figure 4) and torchscale's ``seq_parallel`` mode:
- the paper gathers only among the devices that share a segment; here every gathered branch
  all-gathers over the whole group (one collective per branch). Each rank still sends only its
  ``ceil(L / r)`` dilated rows per head, so the bytes sent stay independent of N when r grows
  with w (section 3.2); a rank receives ``world`` times that;
- segments need not align with shards: a segment that straddles a shard boundary (``L % w != 0``,
  odd lengths) is simply a gathered branch, where the paper assumes ``N`` divisible by ``w``;
- causal masking is by position inside the segment, so a rank's queries see the keys of earlier
  ranks *and* their own (torchscale's causal ``gather_kv`` looks like it drops the rank's own
  keys; see the shared LongNet notes, section 3);
- gathered branches attend with explicit fp32 math over at most ``ceil(w / r)`` keys per query
  (no fused kernel takes a query offset inside a compacted segment yet).

Gradients flow through ``torch.distributed.nn.functional.all_gather`` (its backward is the
paper's reduce-scatter) when autograd needs them; the fused kernel is forward-only, as on one
device. KV-cache decoding is not sequence-parallel.

Notation: B batch, L a rank's tokens, H heads, D head dim, P ranks, C dilated rows per head that
a rank sends (padded to the largest rank), S segments touching a rank, M = ceil(w / r) rows of a
compacted segment, Q a rank's query rows per segment.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional

from models_zoo.attention import (
    _branch_blocks,
    dilated_attention,
    validate_schedule,
)

if TYPE_CHECKING:  # transformers is heavy; attention-only users (the bench) never need it
    from models_zoo.dilated_transformer import LongNetForCausalLM

Group = dist.ProcessGroup | None


@dataclass
class GatherStats:
    """What one rank moved in the all-gathers; accumulates over calls (e.g. over layers).

    Byte counts cover k and v together; ``gathered`` lists ``(w, r, rows)`` per gathered branch
    and call, ``rows`` being the dilated rows per head this rank sent.
    """

    calls: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    gathered: list[tuple[int, int, int]] = field(default_factory=list)


def shard_bounds(seq_len: int, world: int, rank: int) -> tuple[int, int]:
    """Tokens ``[start, stop)`` held by ``rank``: ``ceil(seq_len / world)`` each, the last fewer.

    Raises:
        ValueError: If a rank would get no token, or ``rank`` is not in ``[0, world)``.
    """
    if world <= 0 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} must be in [0, world) with world {world} > 0")
    share = -(-seq_len // world)
    if seq_len <= 0 or share * (world - 1) >= seq_len:
        raise ValueError(
            f"seq_len {seq_len} cannot be split over {world} ranks with ceil(seq_len / world) = "
            f"{share} tokens each and at least one token on the last rank"
        )
    return rank * share, min((rank + 1) * share, seq_len)


@dataclass(frozen=True)
class _Shard:
    seq_len: int
    world: int
    rank: int

    @property
    def share(self) -> int:
        return -(-self.seq_len // self.world)

    @property
    def start(self) -> int:
        return shard_bounds(self.seq_len, self.world, self.rank)[0]

    @property
    def stop(self) -> int:
        return shard_bounds(self.seq_len, self.world, self.rank)[1]


def _current_shard(seq_len: int, group: Group) -> _Shard:
    if not dist.is_available() or not dist.is_initialized():
        return _Shard(seq_len, 1, 0)  # one process: the whole sequence
    return _Shard(seq_len, dist.get_world_size(group), dist.get_rank(group))


def split_branches(
    seq_len: int, world: int, segment_lengths: Sequence[int], dilation_rates: Sequence[int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Branches ``(w, r)`` (w capped at ``seq_len``) that stay local and that are gathered.

    A branch is local when every shard boundary is a multiple of w, so each segment lies on one
    rank; the answer is the same on every rank, so all ranks issue the same collectives.
    """
    segments, rates = validate_schedule(segment_lengths, dilation_rates)
    share = -(-seq_len // world)
    local: list[tuple[int, int]] = []
    gathered: list[tuple[int, int]] = []
    for w, r in zip(segments, rates):
        w = min(w, seq_len)
        (local if world == 1 or share % w == 0 else gathered).append((w, r))
    return local, gathered


def sequence_parallel_dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    seq_len: int,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
    group: Group = None,
    stats: GatherStats | None = None,
) -> torch.Tensor:
    """Dilated attention over a sequence split across the ranks of ``group`` (module docstring).

    Every rank of the group must call this with the same ``seq_len`` and schedule. Without an
    initialised process group the call is single-device :func:`dilated_attention`.

    Args:
        q: This rank's queries, shape (B, L, H, D) for its tokens of :func:`shard_bounds`.
        k: This rank's keys, shape (B, L, H, D).
        v: This rank's values, shape (B, L, H, D).
        seq_len: N, the total sequence length over all ranks.
        segment_lengths: Segment length w of each branch.
        dilation_rates: Dilation rate r of each branch.
        causal: Mask keys after the query position.
        group: Process group the sequence is split over (default: the world).
        stats: If given, the bytes this rank all-gathers are added to it.

    Returns:
        This rank's rows of the attention output, shape (B, L, H, D).

    Raises:
        ValueError: On a bad schedule, or shapes that do not match this rank's shard.
    """
    segments, rates = validate_schedule(segment_lengths, dilation_rates)
    shard = _current_shard(seq_len, group)
    length = shard.stop - shard.start
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape or q.shape[1] != length:
        raise ValueError(
            f"q, k, v must all be (batch, {length}, heads, head_dim) on rank {shard.rank} of "
            f"{shard.world} for seq_len {seq_len}, got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    local, gathered = split_branches(seq_len, shard.world, segments, rates)
    if stats is not None:
        stats.calls += 1
    if not gathered:
        return dilated_attention(
            q, k, v, segment_lengths=[w for w, _ in local], dilation_rates=[r for _, r in local],
            causal=causal,
        )  # fmt: skip
    pending = [_start_gather(k, v, shard, w, r, group, stats) for w, r in gathered]
    local_out, local_lse = _local_partial(q, k, v, local, causal)
    sparse = [
        _gathered_partial(q, pending_gather.wait(), shard, w, r, causal)
        for (w, r), pending_gather in zip(gathered, pending)
    ]
    return _merge(local_out, local_lse, sparse).to(q.dtype)


# ---------------------------------------------------------------------------------------------
# Which rows a branch selects: closed forms shared by all ranks, so no positions are exchanged.


def _count_selected(x: torch.Tensor, offset: torch.Tensor, w: int, r: int) -> torch.Tensor:
    """How many positions p < x branch (w, r) selects for a head: ``(p % w) % r == offset``."""
    per_segment = (w - offset + r - 1).div(r, rounding_mode="floor").clamp(min=0)
    partial = (x % w - offset + r - 1).div(r, rounding_mode="floor").clamp(min=0)
    return (x // w) * per_segment + partial


def _head_offsets(heads: int, r: int, device: torch.device) -> torch.Tensor:
    return torch.arange(heads, device=device) % r  # paper section 2.3: head j -> j mod r


def _slots_per_rank(shard: _Shard, w: int, r: int, heads: int) -> int:
    """C: the most rows any rank selects for any head (every rank pads its rows to C)."""
    offset = _head_offsets(heads, r, torch.device("cpu"))[None, :]  # (1, H)
    bounds = [shard_bounds(shard.seq_len, shard.world, rank) for rank in range(shard.world)]
    start = torch.tensor([b[0] for b in bounds])[:, None]  # (P, 1)
    stop = torch.tensor([b[1] for b in bounds])[:, None]
    counts = _count_selected(stop, offset, w, r) - _count_selected(start, offset, w, r)  # (P, H)
    return max(1, int(counts.max()))


class _PendingGather(NamedTuple):
    """An all-gather of (P, 2, B, H, C, D) k/v rows in flight (``work`` is None when done)."""

    buffer: torch.Tensor
    work: Any

    def wait(self) -> torch.Tensor:
        if self.work is not None:
            self.work.wait()
        return self.buffer


def _start_gather(
    k: torch.Tensor,
    v: torch.Tensor,
    shard: _Shard,
    w: int,
    r: int,
    group: Group,
    stats: GatherStats | None,
) -> _PendingGather:
    """Sparsify this rank's k and v for branch (w, r), then start the all-gather of the rows."""
    B, L, H, D = k.shape
    slots = _slots_per_rank(shard, w, r, H)
    offset = _head_offsets(H, r, k.device)
    per_segment = (w - offset + r - 1).div(r, rounding_mode="floor").clamp(min=1)  # (H,)
    start = torch.tensor(shard.start, device=k.device)
    slot = torch.arange(slots, device=k.device)
    rank_index = _count_selected(start, offset, w, r)[:, None] + slot  # (H, C)
    positions = (rank_index // per_segment[:, None]) * w + offset[:, None]
    positions = positions + (rank_index % per_segment[:, None]) * r  # (H, C), global
    # Rows past this rank's count are padding; clamping keeps the gather in range.
    local = (positions - shard.start).clamp(0, L - 1)
    index = local.reshape(1, H, slots, 1).expand(B, H, slots, D)
    # (B, L, H, D) -> (B, H, L, D) -> (B, H, C, D), stacked to (2, B, H, C, D)
    rows = torch.stack([x.transpose(1, 2).gather(2, index) for x in (k, v)])
    if stats is not None:
        sent = rows.numel() * rows.element_size()
        stats.bytes_sent += sent
        stats.bytes_received += sent * (shard.world - 1)
        stats.gathered.append((w, r, slots))
    needs_grad = torch.is_grad_enabled() and rows.requires_grad
    if needs_grad:
        with warnings.catch_warnings():
            # Deprecated in torch 2.13 for a private successor; still the public autograd op.
            warnings.simplefilter("ignore", FutureWarning)
            parts = dist_functional.all_gather(rows, group=group)
        return _PendingGather(torch.stack(parts), None)  # (P, 2, B, H, C, D)
    # The concatenated form (P*2, B, H, C, D): gloo takes no stacked output.
    buffer = rows.new_empty(shard.world * 2, *rows.shape[1:])
    all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    work = all_gather(buffer, rows, group=group, async_op=True)
    return _PendingGather(buffer.view(shard.world, *rows.shape), work)  # (P, 2, B, H, C, D)


# ---------------------------------------------------------------------------------------------
# Compute: local branches, gathered branches, merge.


def _local_partial(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    branches: list[tuple[int, int]],
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local branches mixed: output (B, L, H, D) and LSE (B, H, L), -inf on rows none covers."""
    B, L, H, D = q.shape
    if not branches:
        empty_lse = q.new_full((B, H, L), float("-inf"), dtype=torch.float32)
        return q.new_zeros(B, L, H, D, dtype=torch.float32), empty_lse
    segments, rates = [w for w, _ in branches], [r for _, r in branches]
    fused = _fused_kernel_with_lse(q)
    if fused is not None:
        return fused(q, k, v, segment_lengths=segments, dilation_rates=rates, causal=causal)
    partials = [_branch_blocks(q, k, v, w, r, causal) for w, r in branches]
    lse = torch.stack([branch_lse for _, branch_lse in partials])  # (branches, B, H, L)
    total = torch.logsumexp(lse, dim=0)
    # Rows no local branch covers have total -inf: weight NaN -> 0 (a gathered branch has them).
    weights = torch.exp(lse - total).nan_to_num(0.0)
    out = sum(weight[..., None] * branch_out for weight, (branch_out, _) in zip(weights, partials))
    assert isinstance(out, torch.Tensor)
    return out.transpose(1, 2), total  # (B, H, L, D) -> (B, L, H, D)


def _fused_kernel_with_lse(
    q: torch.Tensor,
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    if not q.is_cuda:
        return None
    try:
        from models_zoo.kernels.dilated import fused_dilated_attention_with_lse, is_available
    except ImportError:
        return None
    return fused_dilated_attention_with_lse if is_available(q) else None


class _SparsePartial(NamedTuple):
    """A gathered branch on this rank's R = S·Q query rows (invalid rows are padding)."""

    out: torch.Tensor  # (B, H, R, D) float32
    lse: torch.Tensor  # (B, H, R), -inf on invalid rows
    target: torch.Tensor  # (H, R) local row of each query; L (a spare row) on invalid rows
    valid: torch.Tensor  # (H, R)


def _segment_rows(
    shard: _Shard, w: int, r: int, heads: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The segments touching this rank, and which of their compacted rows it holds.

    Returns ``segment_start`` (1, S, 1), ``offset`` (H, 1, 1), and the row range of this rank
    in each segment, ``first`` and ``stop`` (H, S, 1).
    """
    first_segment, last_segment = shard.start // w, (shard.stop - 1) // w
    segment = torch.arange(first_segment, last_segment + 1, device=device)[None, :, None]
    segment_start = segment * w  # (1, S, 1)
    offset = _head_offsets(heads, r, device)[:, None, None]  # (H, 1, 1)
    per_segment = (w - offset + r - 1).div(r, rounding_mode="floor").clamp(min=0)

    def rows_before(position: int) -> torch.Tensor:  # ceil((position - start - offset) / r)
        return (position - segment_start - offset + r - 1).div(r, rounding_mode="floor")

    first = rows_before(shard.start).clamp(min=0)
    stop = torch.minimum(rows_before(shard.stop).clamp(min=0), per_segment)
    return segment_start, offset, first, stop


def _gathered_partial(
    q: torch.Tensor, gathered: torch.Tensor, shard: _Shard, w: int, r: int, causal: bool
) -> _SparsePartial:
    """This rank's queries of branch (w, r) against the all-gathered rows of their segments."""
    B, L, H, D = q.shape
    segment_start, offset, first, stop = _segment_rows(shard, w, r, H, q.device)
    S, rows = segment_start.shape[1], -(-w // r)
    queries = max(1, int((stop - first).max()))
    query_row = first + torch.arange(queries, device=q.device)  # (H, S, Q)
    query_valid = query_row < stop
    query_local = segment_start + offset + query_row * r - shard.start  # (H, S, Q)
    index = query_local.clamp(0, L - 1).reshape(1, H, S * queries, 1).expand(B, H, -1, D)
    # (B, L, H, D) -> (B, H, L, D) -> (B, H, S*Q, D) -> (B, H, S, Q, D)
    qb = q.transpose(1, 2).gather(2, index).view(B, H, S, queries, D)
    kb, vb, key_valid = _segment_keys(gathered, shard, w, r, segment_start, offset, rows)
    scores = torch.einsum("bhsqd,bhsmd->bhsqm", qb.float(), kb.float()) / math.sqrt(D)
    allowed = key_valid[:, :, None, :]  # (H, S, 1, M)
    if causal:
        key_row = torch.arange(rows, device=q.device)
        allowed = allowed & (key_row <= query_row[..., None])  # (H, S, Q, M)
    # A finite fill keeps padded query rows (no allowed key) free of NaNs; they are dropped.
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
    lse = torch.logsumexp(scores, dim=-1)  # (B, H, S, Q)
    out = torch.einsum("bhsqm,bhsmd->bhsqd", torch.exp(scores - lse[..., None]), vb.float())
    valid = query_valid.reshape(H, S * queries)
    lse = lse.reshape(B, H, S * queries).masked_fill(~valid, float("-inf"))
    target = torch.where(query_valid, query_local, L).reshape(H, S * queries)
    return _SparsePartial(out.reshape(B, H, S * queries, D), lse, target, valid)


def _segment_keys(
    gathered: torch.Tensor,
    shard: _Shard,
    w: int,
    r: int,
    segment_start: torch.Tensor,
    offset: torch.Tensor,
    rows: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys and values (B, H, S, M, D) of the segments touching this rank, and valid (H, S, M).

    Rows of a segment past its end, or past the sequence, are invalid (masked, never padded).
    """
    P, _, B, H, C, D = gathered.shape
    row = torch.arange(rows, device=gathered.device) * r  # (M,)
    position = segment_start + offset + row  # (H, S, M)
    valid = (offset + row < w) & (position < shard.seq_len)
    position = position.clamp(max=shard.seq_len - 1)
    source = position // shard.share  # the rank that holds the row
    slot = _count_selected(position, offset, w, r)
    slot = slot - _count_selected(source * shard.share, offset, w, r)
    flat = torch.where(valid, source * C + slot, 0)  # (H, S, M) into the P*C gathered rows
    S = position.shape[1]
    # (P, 2, B, H, C, D) -> (2, B, H, P, C, D) -> (2, B, H, P*C, D)
    pool = gathered.permute(1, 2, 3, 0, 4, 5).reshape(2, B, H, P * C, D)
    index = flat.reshape(1, 1, H, S * rows, 1).expand(2, B, H, S * rows, D)
    blocks = pool.gather(3, index).view(2, B, H, S, rows, D)
    return blocks[0], blocks[1], valid


def _merge(
    local_out: torch.Tensor, local_lse: torch.Tensor, sparse: list[_SparsePartial]
) -> torch.Tensor:
    """Mix the local branches (B, L, H, D) with the gathered ones by log-sum-exp (paper Eq. 10).

    Every row has a finite total LSE because some branch (local or gathered) has r = 1.
    """
    B, L, H, D = local_out.shape
    # A spare row L takes the padded rows, so they never overwrite a real row's total.
    total = torch.nn.functional.pad(local_lse, (0, 1), value=float("-inf"))  # (B, H, L + 1)
    for part in sparse:
        index = part.target.expand(B, H, -1)
        total = total.scatter(2, index, torch.logaddexp(total.gather(2, index), part.lse))
    total = total[..., :L]
    scale = torch.exp(local_lse - total).transpose(1, 2)[..., None]  # (B, H, L) -> (B, L, H, 1)
    # Without autograd the local output (a fresh tensor) is updated in place: at 1M tokens a
    # rank's output is 4 GiB in bf16.
    needs_grad = local_out.requires_grad or any(part.out.requires_grad for part in sparse)
    in_place = not (torch.is_grad_enabled() and needs_grad)
    scale = scale.to(local_out.dtype)
    scaled = local_out.mul_(scale) if in_place else local_out * scale
    flat = scaled.reshape(B, L * H, D)  # (B, L, H, D) -> (B, L*H, D)
    heads = torch.arange(H, device=local_out.device)[:, None]
    for part in sparse:
        row_total = total.gather(2, part.target.clamp(max=L - 1).expand(B, H, -1))
        # where, not a product with a mask: padded rows would give NaN gradients otherwise.
        weight = torch.exp(torch.where(part.valid, part.lse - row_total, float("-inf")))
        keep = part.valid.reshape(-1)
        contribution = (part.out * weight[..., None]).reshape(B, -1, D)[:, keep]  # (B, kept, D)
        destination = (part.target * H + heads).reshape(-1)[keep]
        contribution = contribution.to(flat.dtype)
        if in_place:
            flat.index_add_(1, destination, contribution)
        else:
            flat = flat.index_add(1, destination, contribution)
    return flat.view(B, L, H, D)  # (B, L*H, D) -> (B, L, H, D)


# ---------------------------------------------------------------------------------------------
# The LongNet model in sequence-parallel mode.


@contextlib.contextmanager
def sequence_parallel(
    model: LongNetForCausalLM,
    *,
    seq_len: int,
    group: Group = None,
    stats: GatherStats | None = None,
) -> Iterator[LongNetForCausalLM]:
    """Within the block, ``model``'s attention is :func:`sequence_parallel_dilated_attention`.

    Embeddings, norms, MLPs and the head are per token, so they run on each rank's shard
    unchanged; the attention is the only step that crosses ranks. The original kernels are
    restored on exit.
    """
    from models_zoo.dilated_transformer import LongNetConfig

    config = model.config
    assert isinstance(config, LongNetConfig)
    attend = functools.partial(
        sequence_parallel_dilated_attention,
        seq_len=seq_len,
        segment_lengths=tuple(config.segment_lengths or ()),
        dilation_rates=tuple(config.dilation_rates or ()),
        causal=True,
        group=group,
        stats=stats,
    )
    attentions = [layer.self_attn for layer in model.model.layers]
    originals = [attention.attend for attention in attentions]
    try:
        for attention in attentions:
            attention.attend = attend
        yield model
    finally:
        for attention, original in zip(attentions, originals):
            attention.attend = original


def sequence_parallel_forward(
    model: LongNetForCausalLM,
    input_ids: torch.Tensor,
    *,
    seq_len: int,
    group: Group = None,
    stats: GatherStats | None = None,
) -> torch.Tensor:
    """Logits (B, L, vocab) of this rank's tokens (B, L) of a sequence split over ``group``.

    Equal to the rows of ``model(full_ids).logits`` for this rank's tokens; no KV cache.
    """
    shard = _current_shard(seq_len, group)
    if input_ids.dim() != 2 or input_ids.shape[1] != shard.stop - shard.start:
        raise ValueError(
            f"input_ids must be (batch, {shard.stop - shard.start}) on rank {shard.rank} of "
            f"{shard.world} for seq_len {seq_len}, got {tuple(input_ids.shape)}"
        )
    positions = torch.arange(shard.start, shard.stop, device=input_ids.device)
    position_ids = positions[None].expand(input_ids.shape[0], -1)  # (L,) -> (B, L)
    with sequence_parallel(model, seq_len=seq_len, group=group, stats=stats):
        output = model(input_ids, position_ids=position_ids, use_cache=False)
    logits: torch.Tensor = output.logits
    return logits
