"""Attention of a pass's new positions over per-row KV caches of different lengths, read in place.

Invariant scoring's last chunks (``models_zoo.scoring``; at k = 0 each doc's first answer
token) run as rows of one pass, each on its own doc's cache. The plain way copies every row's
cache into one zero-padded (rows, heads, length, dim) tensor and masks the padding: on CPU that
copy and the masked SDPA over it took about a fifth of a small model's k = 0 scoring
(bench/RESULTS.md, issue 17). Here the pass's cache hands each attention layer the rows' own
cache views beside the new keys and values (:func:`ragged_cache`), and :func:`ragged_attention`
computes each row on its own: scores over its cache and over its new positions (causal among
themselves), one softmax over both, and the two value products summed. Nothing is copied but the
rows' scores, and a row's arithmetic depends on that row alone, so the scorer's bit-identity
across batch sizes, orders and subsets holds (``tests/models_zoo/test_scoring.py``); the test
``test_ragged_attention_equals_sdpa_over_padded_caches_on_random_inputs`` compares it with
SDPA over the padded copy.

The other invariant passes (chunks on caches of one length) go through the same function,
as SDPA under transformers' own masks (the mask functions of ``sdpa``), but with grouped-query
heads read in place (``enable_gqa``) where transformers' CPU path repeats each key-value head
for every query head it serves (``repeat_kv``, a copy of the whole cache per layer): for
SmolLM2's 9:3 heads the SDPA of a 64-token chunk over a 1,000-token cache took 26 ms instead
of 63 ms, with bit-identical output (bench/RESULTS.md, issue 17).

It is used only for model types whose attention layers pass what the cache's ``update``
returns straight to transformers' attention interface (``SUPPORTED_MODEL_TYPES``): each of
the scorer's invariant passes switches the model's ``_attn_implementation`` to
:data:`IMPLEMENTATION` for its duration (:func:`ragged_pass`). Other models keep the padded
copy and transformers' attention.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import sdpa_mask

IMPLEMENTATION = "ladder_ragged"
# Attention layers that call ``cache.update`` and hand its result to the attention interface
# unchanged, with no extra terms (soft-capping, sliding windows, sinks) the interface would need.
SUPPORTED_MODEL_TYPES = frozenset({"gpt2", "llama"})


@dataclass(frozen=True)
class RaggedKV:
    """One layer's keys (or values) for a ragged pass: per row, its cache (heads, depth, dim),
    and the pass's new positions (rows, heads, width, dim)."""

    past: list[torch.Tensor]
    new: torch.Tensor


class RaggedLayer(DynamicLayer):
    """A cache layer whose ``update`` returns the rows' caches beside the new states, unjoined
    (:class:`RaggedKV`); it stores nothing (a ragged pass has no children)."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        super().__init__()
        self.past = keys, values
        self.device, self.is_initialized = keys[0].device, True
        self.keys, self.values = keys[0][None], values[0][None]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[Any, Any]:
        return RaggedKV(self.past[0], key_states), RaggedKV(self.past[1], value_states)


def supports(model: Any) -> bool:
    """Whether ``model`` (a transformers causal LM) runs ragged passes: on CPU, where the
    padded copy cost most (CUDA's default is wide scoring, ``models_zoo.scoring_wide``)."""
    config = getattr(model, "config", None)
    return (
        next(model.parameters()).device.type == "cpu"
        and getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES
        and getattr(config, "_attn_implementation", None) == "sdpa"
        and not getattr(config, "sliding_window", None)
    )


def ragged_cache(template: Any, caches: list[Any]) -> Any:
    """A copy of ``template`` (a ``DynamicCache``) whose layers are :class:`RaggedLayer` s over
    row ``i`` = batch-1 cache ``caches[i]`` (views, not copies)."""
    clone = copy.copy(template)
    clone.layers = [
        RaggedLayer(
            [cache.layers[index].keys[0] for cache in caches],
            [cache.layers[index].values[0] for cache in caches],
        )
        for index in range(len(template.layers))
    ]
    return clone


@contextmanager
def ragged_pass(model: Any) -> Iterator[None]:
    """Within the block, ``model``'s attention layers use :func:`attention`."""
    config = model.config
    previous = config._attn_implementation
    config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        config._attn_implementation = previous


def attention(
    module: Any,
    query: torch.Tensor,
    key: RaggedKV | torch.Tensor,
    value: RaggedKV | torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention function of :data:`IMPLEMENTATION`: :func:`ragged_attention` for a ragged
    pass's :class:`RaggedKV`, else :func:`grouped_sdpa`."""
    if dropout:
        raise ValueError("the scorer's attention runs in eval mode only (dropout 0)")
    for name in ("softcap", "position_bias", "sinks"):
        if kwargs.get(name) is not None:
            raise ValueError(f"the scorer's attention does not support {name!r}")
    if isinstance(key, RaggedKV) and isinstance(value, RaggedKV):
        return ragged_attention(query, key, value, scaling), None
    assert isinstance(key, torch.Tensor) and isinstance(value, torch.Tensor)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    return grouped_sdpa(query, key, value, attention_mask, scaling, causal), None


def grouped_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    is_causal: bool,
) -> torch.Tensor:
    """transformers' ``sdpa_attention_forward`` for these models (same mask, same causal
    rule), with grouped-query heads read in place (``enable_gqa``) instead of repeated.
    Returns (rows, width, heads, dim)."""
    causal = query.shape[2] > 1 and attention_mask is None and is_causal
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        scale=scaling,
        is_causal=causal,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous()


def ragged_attention(
    query: torch.Tensor, key: RaggedKV, value: RaggedKV, scaling: float | None = None
) -> torch.Tensor:
    """Row ``i`` of ``query`` (rows, heads, width, dim) attends to its cache ``key.past[i]``
    (all of it) and to the pass's new positions of its row up to its own (causal). Grouped
    query heads share their key head (as ``repeat_kv``). Returns (rows, width, heads, dim),
    as transformers' attention functions do; the mask transformers built cannot describe
    caches of different lengths and is not used."""
    rows, heads, width, dim = query.shape
    kv_heads = key.new.shape[1]
    group = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    out = query.new_empty(rows, width, heads, dim)
    # (kv heads, group x width, width): a new position sees the new positions up to its own
    future = torch.ones(width, width, dtype=torch.bool, device=query.device).triu(1)
    future = future.repeat(group, 1)
    query = query * scale
    for row in range(rows):
        q = query[row].reshape(kv_heads, group * width, dim)
        past_keys, past_values = key.past[row], value.past[row]  # (kv heads, depth, dim)
        depth = past_keys.shape[1]
        scores = torch.cat(
            [q @ past_keys.transpose(1, 2), q @ key.new[row].transpose(1, 2)], dim=-1
        )
        if width > 1:
            scores[:, :, depth:].masked_fill_(future, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        mixed = torch.baddbmm(
            probs[:, :, depth:] @ value.new[row], probs[:, :, :depth], past_values
        )
        out[row] = mixed.reshape(heads, width, dim).transpose(0, 1)
    return out


AttentionInterface.register(IMPLEMENTATION, attention)
AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)  # masks built as for "sdpa"
