"""The decoder-only skeleton shared by every zoo family; only the attention kernel differs.

Pre-norm blocks (RMSNorm, rotary self-attention, SwiGLU MLP), tied input/output embeddings and a
transformers ``Cache`` for KV caching, so the LongNet model (``dilated_transformer.py``) and the
dense baseline (``baseline_transformer.py``) differ in nothing but the attention call and are a
fair comparison.

Notation: B batch, T new tokens, N cached + new tokens, C hidden size, H heads, D head dim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from models_zoo.layers import RMSNorm, SwiGLU, apply_rotary, rotary_cos_sin

# transformers renamed ``past_key_values`` to ``cache`` (5.2x); the device machine runs 5.17.
CACHE_FIELD = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)

# attend(q (B, T, H, D), k (B, N, H, D), v (B, N, H, D)) -> (B, T, H, D); queries are the last T.
AttendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@strict
class DecoderConfig(PreTrainedConfig):
    """Hyper-parameters shared by the zoo's decoder families (validated on construction)."""

    vocab_size: int = 512
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 172  # SwiGLU width, about 8/3 of hidden_size
    max_position_embeddings: int = 256  # longest sequence trained on; rotary works past it
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self.validate_sizes()
        super().__post_init__(**kwargs)

    def validate_sizes(self) -> None:
        """Raise ``ValueError`` quoting the values if the sizes are inconsistent."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.intermediate_size <= 0 or self.max_position_embeddings <= 0:
            raise ValueError(
                f"intermediate_size ({self.intermediate_size}) and max_position_embeddings "
                f"({self.max_position_embeddings}) must be positive"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(
                f"head_dim = hidden_size / num_attention_heads = "
                f"{self.hidden_size // self.num_attention_heads} must be even for rotary embeddings"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads


class SelfAttention(nn.Module):
    """Rotary multi-head self-attention around a pluggable ``attend`` kernel."""

    def __init__(self, config: DecoderConfig, layer_idx: int, attend: AttendFn) -> None:
        super().__init__()
        self.layer_idx, self.attend = layer_idx, attend
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.rope_theta = config.rope_theta
        C = config.hidden_size
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor, cache: Cache | None
    ) -> torch.Tensor:
        """Self-attention of ``x`` (B, T, C) at ``position_ids`` (B, T) over cache + ``x``."""
        B, T, C = x.shape
        H, D = self.num_heads, self.head_dim
        cos, sin = rotary_cos_sin(position_ids, D, self.rope_theta, x.dtype)
        q = apply_rotary(self.q_proj(x).view(B, T, H, D), cos, sin)  # (B, T, C) -> (B, T, H, D)
        k = apply_rotary(self.k_proj(x).view(B, T, H, D), cos, sin)
        v = self.v_proj(x).view(B, T, H, D)
        if cache is not None:
            # The cache stores (B, H, N, D); the attention kernels take (B, N, H, D).
            k_all, v_all = cache.update(k.transpose(1, 2), v.transpose(1, 2), self.layer_idx)
            k, v = k_all.transpose(1, 2), v_all.transpose(1, 2)
        out = self.attend(q, k, v)  # (B, T, H, D)
        projected: torch.Tensor = self.o_proj(out.reshape(B, T, C))  # (B, T, H, D) -> (B, T, C)
        return projected


class DecoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: DecoderConfig, layer_idx: int, attend: AttendFn) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = SelfAttention(config, layer_idx, attend)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor, cache: Cache | None
    ) -> torch.Tensor:
        """Apply the block to ``x`` (B, T, C)."""
        x = x + self.self_attn(self.input_layernorm(x), position_ids, cache)
        out: torch.Tensor = x + self.mlp(self.post_attention_layernorm(x))
        return out


class DecoderStack(nn.Module):
    """Embeddings, the blocks (``layers``, found there by offloading code) and the final norm."""

    def __init__(self, config: DecoderConfig, attend: AttendFn) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [DecoderBlock(config, index, attend) for index in range(config.num_hidden_layers)]
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, cache: Cache | None
    ) -> torch.Tensor:
        """Hidden states (B, T, C) for token ids (B, T)."""
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, position_ids, cache)
        return self.norm(x)


class DecoderForCausalLM(PreTrainedModel, GenerationMixin):
    """Causal LM over :class:`DecoderStack`; subclasses pick the attention in ``make_attend``.

    Batches must not contain padding before real tokens (``attention_mask`` with zeros is
    refused): dilated segments are aligned to absolute positions, so left padding would change
    the model. Right padding is harmless because the models are causal.
    """

    config_class = DecoderConfig
    base_model_prefix = "model"
    _no_split_modules = ["DecoderBlock"]
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__(config)
        self.model = DecoderStack(config, self.make_attend(config))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @staticmethod
    def make_attend(config: DecoderConfig) -> AttendFn:
        """The attention kernel of this family."""
        raise NotImplementedError

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding table."""
        embeddings: nn.Module = self.model.embed_tokens
        return embeddings

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the token embedding table."""
        self.model.embed_tokens = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits (B, T, vocab) and, with ``labels``, the mean next-token cross-entropy.

        Args:
            input_ids: Token ids (B, T).
            attention_mask: Optional (B, N) mask; must be all ones (see the class docstring).
            position_ids: Optional (B, T) positions; default continues after the cache.
            cache: A transformers ``Cache``.
            labels: Optional (B, T) targets, -100 to ignore; shifted inside.
            use_cache: Create a ``DynamicCache`` when none is passed.
            logits_to_keep: If > 0, only compute logits for the last that many positions.
            past_key_values: Alias of ``cache`` (transformers < 5.2x spelling).
            **kwargs: Ignored generation extras.

        Raises:
            ValueError: Without ``input_ids``, or on an attention mask with padding.
        """
        if input_ids is None:
            raise ValueError("input_ids are required (inputs_embeds are not supported)")
        cache = cache if cache is not None else past_key_values
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError(
                "attention_mask contains padding; zoo models need unpadded (equal-length) batches"
            )
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
            position_ids = position_ids[None].expand(input_ids.shape[0], -1)  # (T,) -> (B, T)
        hidden = self.model(input_ids, position_ids, cache if use_cache else None)
        if logits_to_keep > 0:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
            )
        fields: dict[str, Any] = {CACHE_FIELD: cache if use_cache else None}
        return CausalLMOutputWithPast(loss=loss, logits=logits, **fields)
