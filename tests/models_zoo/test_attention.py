"""Dilated attention: fast path vs explicit-mask reference, dense equivalence, causality, cache."""

from __future__ import annotations

import math

import pytest
import torch

from models_zoo.attention import (
    DilatedMultiheadAttention,
    _branch_positions,
    dilated_attention,
    dilated_attention_reference,
    validate_schedule,
)

# Odd lengths, not multiples of any segment; r = 3 does not divide w = 8, H = 6 not a multiple of 4.
SCHEDULES = [
    ((8, 16, 32), (1, 2, 4)),
    ((5, 8, 20), (1, 3, 4)),
    ((7,), (1,)),
]


def random_qkv(B: int, N: int, H: int, D: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(B, N, H, D, generator=generator) for _ in range(3)]


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool
) -> torch.Tensor:
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal
    )
    return out.transpose(1, 2)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("N", [1, 37, 53])
def test_one_full_segment_with_rate_one_equals_dense_attention(causal: bool, N: int) -> None:
    q, k, v = random_qkv(2, N, 4, 16)
    expected = dense_attention(q, k, v, causal)
    for fn in (dilated_attention, dilated_attention_reference):
        out = fn(q, k, v, segment_lengths=(64,), dilation_rates=(1,), causal=causal)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("grad", [False, True], ids=["fused-no-grad", "explicit-grad"])
def test_fast_path_matches_reference_with_several_branches(
    causal: bool, schedule: tuple[tuple[int, ...], tuple[int, ...]], grad: bool
) -> None:
    q, k, v = random_qkv(2, 45, 6, 8, seed=1)
    segments, rates = schedule
    expected = dilated_attention_reference(
        q, k, v, segment_lengths=segments, dilation_rates=rates, causal=causal
    )
    with torch.set_grad_enabled(grad):
        q.requires_grad_(grad)
        out = dilated_attention(
            q, k, v, segment_lengths=segments, dilation_rates=rates, causal=causal
        )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_reference_equals_one_softmax_over_union_with_overlap_counts() -> None:
    """Eq. 9-10 mixing == softmax over all branches' keys, a key seen c times weighing c·exp."""
    q, k, v = random_qkv(1, 29, 4, 8, seed=2)
    segments, rates = (6, 12, 29), (1, 2, 3)
    N, H = 29, 4
    counts = torch.zeros(H, N, N)
    t = torch.arange(N)[:, None]
    s = torch.arange(N)[None, :]
    for w, r in zip(segments, rates):
        for h in range(H):
            selected_q = (t % w) % r == h % r
            selected_k = (s % w) % r == h % r
            counts[h] += (selected_q & selected_k & (t // w == s // w) & (s <= t)).float()
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(8) + counts.log()
    expected = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v)
    out = dilated_attention_reference(q, k, v, segment_lengths=segments, dilation_rates=rates)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_causal_output_at_t_does_not_change_when_later_tokens_change() -> None:
    q, k, v = random_qkv(1, 41, 4, 8, seed=3)
    t = 22
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, t + 1 :] = torch.randn_like(x[:, t + 1 :])
    kwargs = {"segment_lengths": (8, 16, 32), "dilation_rates": (1, 2, 4)}
    before = dilated_attention(q, k, v, **kwargs)
    after = dilated_attention(q2, k2, v2, **kwargs)
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(after[:, t + 1 :], before[:, t + 1 :])


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_kv_cache_decoding_equals_full_forward(
    schedule: tuple[tuple[int, ...], tuple[int, ...]],
) -> None:
    q, k, v = random_qkv(2, 39, 6, 8, seed=4)
    segments, rates = schedule
    kwargs = {"segment_lengths": segments, "dilation_rates": rates}
    full = dilated_attention(q, k, v, **kwargs)
    steps = [
        dilated_attention(q[:, t : t + 1], k[:, : t + 1], v[:, : t + 1], **kwargs)
        for t in range(39)
    ]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    chunk = dilated_attention(q[:, 30:], k, v, **kwargs)  # a multi-token cache continuation
    torch.testing.assert_close(chunk, full[:, 30:], atol=1e-5, rtol=1e-5)


def test_gradients_flow_and_match_reference_including_branch_weights() -> None:
    kwargs = {"segment_lengths": (8, 16, 32), "dilation_rates": (1, 2, 4)}
    grads = []
    for fn in (dilated_attention, dilated_attention_reference):
        q, k, v = (x.requires_grad_() for x in random_qkv(1, 37, 4, 8, seed=5))
        weights = torch.randn(1, 37, 4, 8, generator=torch.Generator().manual_seed(9))
        (fn(q, k, v, **kwargs) * weights).sum().backward()
        grads.append([x.grad for x in (q, k, v)])
    for fast, reference in zip(*grads):
        assert fast is not None and reference is not None and fast.abs().sum() > 0
        torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-4)


def test_head_offset_is_paper_head_mod_r_not_torchscale_blocks() -> None:
    positions, valid = _branch_positions(length=8, w=8, r=2, heads=4, device=torch.device("cpu"))
    first_rows = positions[:, 0, 0].tolist()
    assert first_rows == [0, 1, 0, 1]  # torchscale would give [0, 0, 1, 1]
    assert valid.all()


@pytest.mark.parametrize(
    ("segments", "rates", "message"),
    [
        ((8, 16), (1,), r"\[8, 16\] and dilation_rates \[1\]"),
        ((8, 0), (1, 2), r"segment_lengths must be positive integers, got \[8, 0\]"),
        ((8, 16), (1, -2), r"dilation_rates must be positive integers, got \[1, -2\]"),
        ((8, 16), (2, 4), r"dilation_rates \[2, 4\] need at least one branch with r = 1"),
        ((), (), "at least one"),
    ],
)
def test_bad_schedules_raise_value_error_quoting_values(
    segments: tuple[int, ...], rates: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        validate_schedule(segments, rates)
    q = torch.zeros(1, 4, 1, 2)
    with pytest.raises(ValueError, match=message):
        dilated_attention(q, q, q, segment_lengths=segments, dilation_rates=rates)


def test_module_is_drop_in_for_nn_multihead_attention() -> None:
    torch.manual_seed(0)
    reference = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    dilated = DilatedMultiheadAttention(32, 4, segment_lengths=(64,), dilation_rates=(1,))
    q_weight, k_weight, v_weight = reference.in_proj_weight.chunk(3)
    q_bias, k_bias, v_bias = reference.in_proj_bias.chunk(3)
    with torch.no_grad():
        for proj, weight, bias in (
            (dilated.q_proj, q_weight, q_bias),
            (dilated.k_proj, k_weight, k_bias),
            (dilated.v_proj, v_weight, v_bias),
            (dilated.out_proj, reference.out_proj.weight, reference.out_proj.bias),
        ):
            proj.weight.copy_(weight)
            proj.bias.copy_(bias)
    x = torch.randn(2, 23, 32)
    mask = torch.ones(23, 23, dtype=torch.bool).triu(1)
    expected, _ = reference(x, x, x, attn_mask=mask, need_weights=False)
    out, weights = dilated(x)
    assert weights is None
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
