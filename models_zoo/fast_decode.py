"""Fast batched generation for Llama-shaped models: static KV cache and a CUDA-graph decode step.

Works on transformers' ``LlamaForCausalLM`` (and any model with the same module names:
``model.embed_tokens``, ``model.layers[i].{input_layernorm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp}``, ``model.norm``, ``model.rotary_emb``, ``lm_head``), including
models whose Linear/Embedding modules were swapped by :mod:`models_zoo.quantization`. The model's
own modules are called, so its weights are used as they are; only the attention and the cache
are ours.

Design (the usual recipe of gpt-fast and of transformers' static cache, made exact for padding):
- a static KV cache ``(B, H_kv, L, D)`` per layer, allocated once per (batch, length bucket);
- left-padded prompts: positions are ``cumsum(mask) - 1`` per row (as transformers does), pad
  keys are masked for every query, and a pad query attends to itself only (keeps it finite), so
  each row's tokens equal the row generated alone (tested);
- the prompt is processed eagerly in one pass; each decode step reads fixed buffers (token,
  position, write index, key-valid mask) and is captured once into a CUDA graph on CUDA and
  replayed per token, which removes the ~200 kernel launches per token that dominate a small
  model's decode time (Nvidia's CUDA-graphs guidance; the gpt-fast "reduce-overhead" recipe).

Sampling happens outside the graph (greedy argmax or temperature/top-k multinomial). Generation
does not stop early at EOS: all rows run ``max_new_tokens`` steps and tokens after a row's first
EOS are replaced by ``pad_token_id`` (a host sync per step to stop early would cost more than the
steps saved at serving batch sizes).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

LENGTH_BUCKET = 128  # cache lengths are rounded up to this, so one graph serves many requests
GRAPH_WARMUP_STEPS = 2


@dataclass(frozen=True)
class _LlamaShape:
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float


def _llama_shape(model: nn.Module) -> _LlamaShape:
    config = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if config is None or inner is None or not all(hasattr(inner, n) for n in needed):
        raise ValueError(
            f"{type(model).__name__} is not Llama-shaped: fast decoding needs config and "
            f"model.{{{', '.join(needed)}}} and lm_head"
        )
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return _LlamaShape(heads, kv_heads, head_dim, head_dim**-0.5)


def left_pad(
    prompts: Sequence[Sequence[int]], pad_token_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(input_ids, attention_mask)``, both ``(B, T)``.

    Raises:
        ValueError: for an empty batch or an empty prompt.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("left_pad needs at least one prompt and no empty prompt")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def hasattr_streamer(model: nn.Module) -> bool:
    """Whether ``model`` was CPU-offloaded by :func:`models_zoo.offload.apply_cpu_offload`."""
    return getattr(model, "layer_streamer", None) is not None


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class FastDecoder:
    """Static-cache decoder for one model, batch size and maximum length.

    Args:
        model: a Llama-shaped causal LM (module docstring), in eval mode.
        batch_size: rows per call (prompts are left-padded to one width).
        max_length: prompt width + new tokens the cache must hold.
        use_cuda_graph: capture the decode step into a CUDA graph; default: on for CUDA
            (off for a CPU-offloaded model, whose weights move every call).
        compile_step: ``torch.compile`` the decode step (fuses its elementwise kernels) before
            it is captured; costs a compile per batch size and length bucket.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        batch_size: int,
        max_length: int,
        use_cuda_graph: bool | None = None,
        compile_step: bool = False,
    ) -> None:
        self.model = model
        self.shape = _llama_shape(model)
        inner = model.model
        self.device = inner.norm.weight.device
        self.dtype = inner.norm.weight.dtype
        self.batch_size = batch_size
        self.max_length = max_length
        if use_cuda_graph is None:
            use_cuda_graph = self.device.type == "cuda" and not hasattr_streamer(model)
        self.use_cuda_graph = use_cuda_graph
        # Optional: let Inductor fuse the step's ~45 small kernels per layer before capture.
        self.step = (
            torch.compile(self._decode_step, dynamic=False) if compile_step else self._decode_step
        )
        if self.use_cuda_graph and self.device.type != "cuda":
            raise ValueError(f"use_cuda_graph needs a CUDA model, this one is on {self.device}")
        if self.use_cuda_graph and getattr(model, "layer_streamer", None) is not None:
            raise ValueError("a CPU-offloaded model streams weights per call: use_cuda_graph=False")
        cache_shape = (batch_size, self.shape.kv_heads, max_length, self.shape.head_dim)
        self.keys = [
            torch.zeros(cache_shape, dtype=self.dtype, device=self.device) for _ in inner.layers
        ]
        self.values = [torch.zeros_like(k) for k in self.keys]
        # Decode-step inputs: fixed buffers, so the captured graph reads the current values.
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=self.device)
        self.position = torch.zeros(batch_size, 1, dtype=torch.long, device=self.device)
        self.write_at = torch.zeros(1, dtype=torch.long, device=self.device)
        self.key_valid = torch.zeros(batch_size, max_length, dtype=torch.bool, device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_logits: torch.Tensor | None = None

    def _forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        write_at: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Run the model over new tokens, appending their keys/values to the cache.

        Notation: B batch, T new tokens, L cache length, H/H_kv heads, D head dim, C hidden.

        Args:
            tokens: ``(B, T)`` token ids; positions: ``(B, T)`` rotary positions.
            write_at: ``(T,)`` cache indices of the new tokens.
            mask: ``(B, 1, T, L)`` bool, True where a query may see a cache key.

        Returns:
            ``(B, V)`` logits of the last new token.
        """
        inner, shape = self.model.model, self.shape
        B, T = tokens.shape
        x = inner.embed_tokens(tokens).to(self.dtype)  # (B, T, C)
        rotary = inner.rotary_emb
        freqs = positions[..., None].float() * rotary.inv_freq.float()  # (B, T, D/2)
        angles = torch.cat((freqs, freqs), dim=-1)[:, None]  # (B, 1, T, D)
        scale = getattr(rotary, "attention_scaling", 1.0)
        cos, sin = (angles.cos() * scale).to(self.dtype), (angles.sin() * scale).to(self.dtype)
        groups = shape.heads // shape.kv_heads
        streamer = getattr(self.model, "layer_streamer", None)  # models_zoo.offload
        for index, layer in enumerate(inner.layers):
            if streamer is not None:
                streamer.before(layer)
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(B, T, shape.heads, shape.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(B, T, shape.kv_heads, shape.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(B, T, shape.kv_heads, shape.head_dim).transpose(1, 2)
            # (B, T, H, D) -> (B, H, T, D) above; rotary as in transformers' apply_rotary_pos_emb.
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            self.keys[index].index_copy_(2, write_at, k)
            self.values[index].index_copy_(2, write_at, v)
            keys, values = self.keys[index], self.values[index]  # (B, H_kv, L, D)
            if groups > 1:
                keys = keys.repeat_interleave(groups, dim=1)  # (B, H, L, D)
                values = values.repeat_interleave(groups, dim=1)
            out = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask, scale=shape.scaling
            )  # (B, H, T, D)
            out = out.transpose(1, 2).reshape(B, T, shape.heads * shape.head_dim)  # (B, T, H*D)
            x = x + attn.o_proj(out)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
            if streamer is not None:
                streamer.after(layer)
        return self.model.lm_head(inner.norm(x[:, -1]))  # (B, V)

    def _decode_step(self) -> torch.Tensor:
        self.key_valid.index_fill_(1, self.write_at, True)
        mask = self.key_valid[:, None, None, :]  # (B, 1, 1, L)
        return self._forward(self.token, self.position, self.write_at, mask)

    def _capture(self) -> None:
        # Warm up on a side stream (cuBLAS handles, allocator pools) before capturing. The state
        # this touches (cache row 0, key_valid) is rewritten by the prefill that follows.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                self.step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.graph_logits = self.step()
        logger.info("captured decode graph: batch %d, length %d", self.batch_size, self.max_length)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """New tokens ``(B, max_new_tokens)`` for left-padded ``input_ids``/``attention_mask``."""
        B, T = input_ids.shape
        if B != self.batch_size or T + max_new_tokens - 1 > self.max_length:
            raise ValueError(
                f"decoder built for batch {self.batch_size} and length {self.max_length}, got "
                f"batch {B} with {T} prompt + {max_new_tokens} new tokens"
            )
        if self.use_cuda_graph and self.graph is None:
            self._capture()
        input_ids = input_ids.to(self.device)
        valid = attention_mask.to(self.device).bool()
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        self.key_valid.zero_()
        self.key_valid[:, :T] = valid
        cache_index = torch.arange(self.max_length, device=self.device)
        causal = cache_index[None, :] <= cache_index[:T, None]  # (T, L)
        itself = cache_index[None, :] == cache_index[:T, None]
        # Pad queries see only themselves: their rows stay finite and nobody reads them.
        mask = (causal[None] & self.key_valid[:, None, :]) | itself[None]  # (B, T, L)
        logits = self._forward(input_ids, positions, cache_index[:T], mask[:, None])
        generated = torch.empty(B, max_new_tokens, dtype=torch.long, device=self.device)
        token = _pick(logits, do_sample, temperature, top_k, generator)
        generated[:, 0] = token
        self.position.copy_(valid.long().sum(-1, keepdim=True))
        self.write_at.fill_(T)
        for step in range(1, max_new_tokens):
            self.token.copy_(token[:, None])
            if self.graph is not None:
                self.graph.replay()
                assert self.graph_logits is not None
                logits = self.graph_logits
            else:
                logits = self.step()
            token = _pick(logits, do_sample, temperature, top_k, generator)
            generated[:, step] = token
            self.position.add_(1)
            self.write_at.add_(1)
        return generated


def _pick(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_k: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = logits.float() / max(temperature, 1e-5)
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.shape[-1]), dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


_DECODERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int, bool, bool], FastDecoder]] = (
    weakref.WeakKeyDictionary()
)


def generate_fast(
    model: nn.Module,
    input_ids: torch.Tensor | Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    attention_mask: torch.Tensor | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    use_cuda_graph: bool | None = None,
    compile_step: bool = False,
) -> torch.Tensor:
    """Batched generation with a static KV cache (and a CUDA-graph decode step on CUDA).

    Greedy outputs of each row equal that row generated alone (left padding is exact). Decoders
    (caches and captured graphs) are kept per model, batch size and length bucket, so repeated
    calls of the same shape reuse the captured graph.

    Args:
        model: a Llama-shaped causal LM in eval mode (module docstring).
        input_ids: ``(B, T)`` left-padded ids with ``attention_mask``, or a list of token lists
            (left-padded here with ``pad_token_id``).
        max_new_tokens: tokens to generate per row (>= 1).
        attention_mask: ``(B, T)``, 1 for real tokens; default: all real.
        do_sample: sample instead of greedy argmax (with ``temperature``, ``top_k``,
            ``generator``).
        eos_token_id: tokens after a row's first EOS are replaced by ``pad_token_id``.
        pad_token_id: pad id for left padding and after EOS.
        use_cuda_graph: default: True on CUDA (unless CPU-offloaded), False elsewhere.
        compile_step: ``torch.compile`` the decode step before capture (see FastDecoder).

    Returns:
        ``(B, max_new_tokens)`` long tensor of new tokens, on the model's device.

    Raises:
        ValueError: for a model that is not Llama-shaped, ``max_new_tokens < 1`` or bad prompts.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    _llama_shape(model)
    if isinstance(input_ids, torch.Tensor):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
    else:
        input_ids, attention_mask = left_pad(input_ids, pad_token_id)
    B, T = input_ids.shape
    length = -(-(T + max_new_tokens) // LENGTH_BUCKET) * LENGTH_BUCKET
    device = model.model.norm.weight.device
    if use_cuda_graph is None:
        use_cuda_graph = device.type == "cuda" and not hasattr_streamer(model)
    graph = use_cuda_graph
    per_model = _DECODERS.setdefault(model, {})
    key = (B, length, graph, compile_step)
    if key not in per_model:
        per_model[key] = FastDecoder(model, batch_size=B, max_length=length, use_cuda_graph=graph)
    generated = per_model[key].generate(
        input_ids,
        attention_mask,
        max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        generator=generator,
    )
    if eos_token_id is not None:
        after_eos = (generated == eos_token_id).long().cumsum(-1) - (
            generated == eos_token_id
        ).long()
        generated = generated.masked_fill(after_eos > 0, pad_token_id)
    return generated
