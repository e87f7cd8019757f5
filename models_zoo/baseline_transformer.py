"""Dense baseline: the shared decoder (``decoder.py``) with full causal softmax attention.

It differs from the LongNet model in ``dilated_transformer.py`` only in the attention kernel, so
comparing the two isolates the effect of dilated attention.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch.nn import functional as F

from models_zoo.decoder import AttendFn, DecoderConfig, DecoderForCausalLM


@strict
class DenseConfig(DecoderConfig):
    """Configuration of the dense baseline (all fields live in :class:`DecoderConfig`)."""

    model_type = "ladder_dense"


def dense_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention where the T queries are the last T of the N keys.

    Args:
        q: (B, T, H, D) queries.
        k: (B, N, H, D) keys, N >= T.
        v: (B, N, H, D) values.

    Returns:
        (B, T, H, D) output.
    """
    T, N = q.shape[1], k.shape[1]
    mask = None
    if 1 < T < N:
        # SDPA's is_causal aligns the mask top-left; a cache continuation needs bottom-right.
        mask = torch.ones(T, N, dtype=torch.bool, device=q.device).tril(diagonal=N - T)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2),  # (B, T, H, D) -> (B, H, T, D)
        k.transpose(1, 2),
        v.transpose(1, 2),
        attn_mask=mask,
        is_causal=T == N and T > 1,
    )
    return out.transpose(1, 2)  # (B, H, T, D) -> (B, T, H, D)


class DenseForCausalLM(DecoderForCausalLM):
    """Dense decoder-only language model (``model_type`` ``ladder_dense``)."""

    config_class = DenseConfig

    @staticmethod
    def make_attend(config: DecoderConfig) -> AttendFn:
        """Dense causal attention."""
        return dense_causal_attention
