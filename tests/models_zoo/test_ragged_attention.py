"""Ragged last-chunk attention (each row on its own cache, read in place) against SDPA over the
padded copy, and in the invariant scorer."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from models_zoo import ragged_attention, serving
from models_zoo.fewshot_lm import FewshotLM
from models_zoo.ragged_attention import RaggedKV, RaggedLayer
from models_zoo.scoring import PrefixTreeScorer


def _padded_reference(
    query: torch.Tensor, keys: RaggedKV, values: RaggedKV, scale: float
) -> torch.Tensor:
    """SDPA over each row's cache copied into a zero-padded tensor, the padding masked."""
    rows, heads, width, dim = query.shape
    kv_heads = keys.new.shape[1]
    length = max(past.shape[1] for past in keys.past)
    padded_k = torch.zeros(rows, kv_heads, length + width, dim)
    padded_v = torch.zeros(rows, kv_heads, length + width, dim)
    mask = torch.zeros(rows, 1, width, length + width, dtype=torch.bool)
    for row, (past_k, past_v) in enumerate(zip(keys.past, values.past, strict=True)):
        depth = past_k.shape[1]
        padded_k[row, :, :depth], padded_v[row, :, :depth] = past_k, past_v
        mask[row, :, :, :depth] = True
    padded_k[:, :, length:], padded_v[:, :, length:] = keys.new, values.new
    mask[:, :, :, length:] = torch.ones(width, width, dtype=torch.bool).tril()
    group = heads // kv_heads
    out = F.scaled_dot_product_attention(
        query,
        padded_k.repeat_interleave(group, dim=1),
        padded_v.repeat_interleave(group, dim=1),
        attn_mask=mask,
        scale=scale,
    )
    return out.transpose(1, 2)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("width", [1, 3])
def test_ragged_attention_equals_sdpa_over_padded_caches_on_random_inputs(
    heads: int, kv_heads: int, width: int
) -> None:
    torch.manual_seed(heads * 10 + kv_heads + width)
    rows, dim = 7, 16
    depths = [1, 5, 33, 64, 64, 90, 17]
    # Caches as the scorer holds them: views of rows of wider buffers.
    buffers = [torch.randn(3, kv_heads, depth + 11, dim) for depth in depths]
    past_k = [buffer[1, :, :depth] for buffer, depth in zip(buffers, depths, strict=True)]
    past_v = [torch.randn(kv_heads, depth, dim) for depth in depths]
    keys = RaggedKV(past_k, torch.randn(rows, kv_heads, width, dim))
    values = RaggedKV(past_v, torch.randn(rows, kv_heads, width, dim))
    query = torch.randn(rows, width, heads, dim).transpose(1, 2)  # as the attention layers do
    got, weights = ragged_attention.attention(None, query, keys, values, None, scaling=0.3)
    assert weights is None and got.shape == (rows, width, heads, dim)
    expected = _padded_reference(query, keys, values, 0.3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # A row's bits depend on that row alone: rows computed alone or in another order agree.
    for row in (0, 3, 6):
        alone = ragged_attention.ragged_attention(
            query[row : row + 1],
            RaggedKV([past_k[row]], keys.new[row : row + 1]),
            RaggedKV([past_v[row]], values.new[row : row + 1]),
            0.3,
        )
        assert torch.equal(alone[0], got[row])


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (9, 3)])
@pytest.mark.parametrize("masked", [True, False])
def test_grouped_sdpa_equals_transformers_sdpa_with_repeated_heads_on_random_inputs(
    heads: int, kv_heads: int, masked: bool
) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(heads + kv_heads + masked)
    rows, width, depth, dim = 5, 24, 70, 16
    query = torch.randn(rows, width, heads, dim).transpose(1, 2)
    key = torch.randn(rows, kv_heads, depth + width, dim)
    value = torch.randn(rows, kv_heads, depth + width, dim)
    mask = None
    if masked:  # a chunk on a cache of ``depth`` positions, some rows' padding masked
        columns = torch.arange(depth + width)
        mask = (columns[None, :] <= depth + torch.arange(width)[:, None])[None, None]
        mask = mask.expand(rows, 1, width, depth + width).clone()
        mask[1, :, :, 50:depth] = False
    else:
        key, value = key[:, :, :width], value[:, :, :width]  # no cache: causal from the start

    class Layer(torch.nn.Module):
        num_key_value_groups = heads // kv_heads
        is_causal = True

    expected, _ = sdpa_attention_forward(Layer(), query, key, value, mask, scaling=0.25)
    got, weights = ragged_attention.attention(Layer(), query, key, value, mask, scaling=0.25)
    assert weights is None
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def _requests(seed: int, vocab: int) -> list[tuple[list[int], int]]:
    """k = 0-shaped: unrelated contexts of many lengths, two or three short answers each."""
    rng = random.Random(seed)
    requests = []
    for _ in range(14):
        context = [rng.randrange(vocab) for _ in range(rng.randrange(3, 70))]
        for _ in range(rng.randrange(2, 4)):
            answer = [rng.randrange(vocab) for _ in range(rng.randrange(1, 4))]
            requests.append((context + answer, len(answer)))
    return requests


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gqa_llama_dir", "tiny_model_dir"])
def test_scorer_last_chunks_read_caches_in_place_and_equal_the_padded_copy(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = serving.load(request.getfixturevalue(fixture), device="cpu")
    model = served.model
    assert ragged_attention.supports(model)
    assert served.last_chunk_attention == "ragged"
    assert FewshotLM(served).scoring["last_chunk_attention"] == "ragged"
    updates: list[int] = []
    update = RaggedLayer.update

    def counted(self: RaggedLayer, *args: Any, **kwargs: Any) -> Any:
        updates.append(1)
        return update(self, *args, **kwargs)

    monkeypatch.setattr(RaggedLayer, "update", counted)
    grouped: list[int] = []
    sdpa = ragged_attention.grouped_sdpa

    def counted_sdpa(*args: Any) -> torch.Tensor:
        grouped.append(1)
        return sdpa(*args)

    monkeypatch.setattr(ragged_attention, "grouped_sdpa", counted_sdpa)

    def scorer(**options: Any) -> PrefixTreeScorer:
        return PrefixTreeScorer(
            model, cache_argument=served._cache_argument, chunk_tokens=16, **options
        )

    requests = _requests(0, model.config.vocab_size)
    ragged = scorer().score(requests, batch_size=32)
    assert updates, "the last chunks did not run ragged"
    assert grouped, "the chunk passes did not run the scorer's SDPA"
    assert model.config._attn_implementation == "sdpa"  # restored after each pass
    assert scorer().score(requests[::-1], batch_size=4) == ragged[::-1]
    assert [scorer().score([r], batch_size=1)[0] for r in requests[:8]] == ragged[:8]
    calls, sdpa_calls = len(updates), len(grouped)
    padded = scorer(ragged=False).score(requests, batch_size=32)
    assert (len(updates), len(grouped)) == (calls, sdpa_calls)  # off: transformers' own
    assert ragged == pytest.approx(padded, abs=1e-5)
    assert [scorer(ragged=False).score([r], batch_size=1)[0] for r in requests[:8]] == padded[:8]


def test_zoo_models_keep_the_padded_copy(tiny_checkpoints: dict[str, Path]) -> None:
    served = serving.load(tiny_checkpoints["longnet"], device="cpu")
    assert not ragged_attention.supports(served.model)
    assert served.last_chunk_attention == "padded"
