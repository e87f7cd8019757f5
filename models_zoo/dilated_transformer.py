"""LongNet-style decoder (Ding et al., 2023, arXiv:2307.02486): the shared decoder with dilated
attention (``attention.py``) in every layer.

The paper's language models use w = {2048, 4096, 8192, 16384, 32768} with r = {1, 2, 4, 6, 12};
the zoo's presets scale the same geometric schedule down to short training sequences. Rotary
position embeddings replace the paper's XPOS; everything but attention is shared with the dense
baseline in ``baseline_transformer.py``.
"""

from __future__ import annotations

import functools
from typing import Any

from huggingface_hub.dataclasses import strict

from models_zoo.attention import dilated_attention, validate_schedule
from models_zoo.decoder import AttendFn, DecoderConfig, DecoderForCausalLM


@strict
class LongNetConfig(DecoderConfig):
    """Configuration of the LongNet-style model."""

    model_type = "ladder_longnet"

    segment_lengths: list[int] | None = None  # w per branch; default [16, 32, 64]
    dilation_rates: list[int] | None = None  # r per branch; default [1, 2, 4]; needs one r = 1

    def __post_init__(self, **kwargs: Any) -> None:
        self.segment_lengths = (
            [16, 32, 64] if self.segment_lengths is None else self.segment_lengths
        )
        self.dilation_rates = [1, 2, 4] if self.dilation_rates is None else self.dilation_rates
        segments, rates = validate_schedule(self.segment_lengths, self.dilation_rates)
        self.segment_lengths, self.dilation_rates = list(segments), list(rates)
        super().__post_init__(**kwargs)


class LongNetForCausalLM(DecoderForCausalLM):
    """LongNet-style decoder-only language model (``model_type`` ``ladder_longnet``)."""

    config_class = LongNetConfig

    @staticmethod
    def make_attend(config: DecoderConfig) -> AttendFn:
        """Causal dilated attention with the config's schedule."""
        assert isinstance(config, LongNetConfig)
        return functools.partial(
            dilated_attention,
            segment_lengths=tuple(config.segment_lengths or ()),
            dilation_rates=tuple(config.dilation_rates or ()),
            causal=True,
        )
