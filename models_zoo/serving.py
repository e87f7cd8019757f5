"""Serving API used by every Ladder worker: load a checkpoint, generate, score log-likelihoods.

``load`` takes a zoo checkpoint (``ladder_longnet``/``ladder_dense``) or any local Hugging Face
causal-LM directory whose architecture transformers ships (Llama, GPT-2, ...). Weights must be
safetensors; ``trust_remote_code`` is never enabled. Loaded models are cached per process.

Batching: ``generate`` batches prompts of equal token length (no padding, so LongNet segments
stay aligned to absolute positions and results do not depend on batch composition);
``loglikelihood`` encodes as lm-evaluation-harness does and scores through
``models_zoo.scoring`` (shared prefixes run once over KV caches; right padding, exact for
causal models), on CUDA through ``models_zoo.scoring_wide`` (wide padded passes). This is the
only module that loads and runs torch language models; the few-shot runner reaches it through
``models_zoo.fewshot_lm``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.cache_utils import DynamicCache

import models_zoo.registry  # noqa: F401  (registers the zoo architectures first)
from models_zoo import ragged_attention
from models_zoo.checkpoint import read_model_card, weight_files, weights_digest
from models_zoo.offload import apply_cpu_offload
from models_zoo.pieces import encode_texts, splits_safely
from models_zoo.quantization import Int8BlockLinear, quantize_model_int8
from models_zoo.scoring import PrefixTreeScorer
from models_zoo.scoring_wide import SUPPORTED_ATTENTION, WideScorer

logger = logging.getLogger(__name__)

QUANTIZE_CHOICES = (None, "int8")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GENERATE_BATCH_SIZE = 16
DEFAULT_MAX_LENGTH = 2048  # for configs that declare no context length
CHUNK_TOKENS = 64  # invariant scoring's chunk length (models_zoo.scoring)
# Rows per scoring pass by default: the CPU's invariant chunks gain little from more; a GPU's
# wide passes (models_zoo.scoring_wide) need hundreds of rows to fill the card.
DEFAULT_SCORING_ROWS = {"invariant_chunks": 16, "wide": 256}
SPECIAL_TOKEN_CHOICES = ("tokenizer", "none")
SPECIAL_TOKENS_DEFAULT = "tokenizer"  # lm-evaluation-harness's default (add_bos_token unset)

MaxMemory = int | Mapping[str, int | str] | None


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    """Texts of one ``generate`` call plus the numbers the accounting code records."""

    texts: list[str]
    prompt_tokens: int
    new_tokens: int
    wall_time_s: float
    tokens_per_s: float
    peak_memory_bytes: int  # CUDA: peak allocated during the call; CPU: process peak RSS
    device: str


class ServedModel:
    """A loaded causal LM with its tokenizer, ready for generation and scoring."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        *,
        path: Path,
        device: torch.device,
        digest: str,
    ) -> None:
        self.model, self.tokenizer, self.path, self.device = model, tokenizer, path, device
        self.fused_activations = _fuse_tanh_gelu(model)
        # Invariant scoring's last chunks: their rows' caches read in place, or a padded copy.
        self.last_chunk_attention = "ragged" if ragged_attention.supports(model) else "padded"
        self.digest = digest
        self.card = read_model_card(path)
        self.num_parameters = int(model.num_parameters())
        self.max_length = _context_length(model.config)
        self.last_stats: GenerationResult | None = None
        self.tokens_processed = 0  # tokens run through the model by ``loglikelihood``
        self.last_greedy: list[bool] = []  # per pair of the last ``loglikelihood``: greedy?
        self._is_zoo = model.config.model_type in models_zoo.registry.ZOO_MODELS
        # transformers renamed the forward argument past_key_values -> cache (5.2x).
        forward_parameters = inspect.signature(model.forward).parameters
        self._cache_argument = "cache" if "cache" in forward_parameters else "past_key_values"
        self._lock = threading.Lock()
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else None
        self._prefix_token = prefix if prefix is not None else tokenizer.eos_token_id
        self._prefix_text = (
            str(tokenizer.decode([self._prefix_token])) if self._prefix_token is not None else ""
        )
        # Few-shot texts are encoded in shared pieces where that gives the same tokens.
        self._splits_safely = splits_safely(tokenizer)
        self._pad_token = tokenizer.pad_token_id
        if self._pad_token is None:
            self._pad_token = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        # Greedy generation of Llama-shaped and zoo models on CUDA goes through the static-cache,
        # CUDA-graph decoder (models_zoo.fast_decode); tests switch it on for CPU as well.
        self.use_fast_decode = device.type == "cuda" and (_is_llama_shaped(model) or self._is_zoo)
        # Chat answers (models_zoo.chat) run token by token through the same decoder: on CUDA
        # its captured step; on CPU only for fp32 Llama-shaped models, where a batch-1 step costs
        # ~0.45x the model's own forward (the packed-panel GEMV of models_zoo.kernels.cpu_gemv).
        # Not bf16 or int8 weights there: their decoder steps were 2-7x slower than the model's
        # own (bench/RESULTS.md, issue 15).
        from models_zoo.fast_decode import hasattr_streamer

        # Log-likelihoods on CUDA go through wide padded passes (models_zoo.scoring_wide), not
        # the CPU's prefix tree of small passes; tests switch it on for CPU as well.
        # ``wide_share_prefix`` off recomputes demonstration blocks (the bench measures both).
        self.use_wide_scoring = device.type == "cuda"
        self.wide_share_prefix = True
        self.use_fast_chat = self.use_fast_decode or (
            device.type == "cpu"
            and _is_llama_shaped(model)
            and not hasattr_streamer(model)
            and all(p.dtype == torch.float32 for p in model.parameters())
            and not any(isinstance(m, Int8BlockLinear) for m in model.modules())
        )

    @property
    def lock(self) -> threading.Lock:
        """Held while the model computes (one generation or scoring call at a time)."""
        return self._lock

    def __repr__(self) -> str:
        return f"ServedModel({str(self.path)!r}, device={self.device}, parameters={self.num_parameters})"

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """Continue each prompt; see :meth:`generate_with_stats`. Returns only the texts."""
        return self.generate_with_stats(
            prompts, max_new_tokens=max_new_tokens, temperature=temperature, stop=stop, seed=seed
        ).texts

    def generate_with_stats(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> GenerationResult:
        """Continue each prompt with a KV cache, greedy at temperature 0, else seeded sampling.

        A continuation ends at EOS, at ``max_new_tokens``, or just before the first occurrence of
        any ``stop`` string (which is not included). Prompts are left-truncated to fit the
        model's context. Sampling uses one generator per prompt seeded from ``(seed, index)``,
        so results do not depend on how prompts are batched.

        Raises:
            ValueError: On a negative ``max_new_tokens`` or ``temperature``, or a bare string
                passed as ``prompts`` or ``stop``.
        """
        if isinstance(prompts, str) or isinstance(stop, str):
            raise ValueError("prompts and stop must be sequences of strings, not a single string")
        if max_new_tokens < 0 or temperature < 0:
            raise ValueError(
                f"max_new_tokens ({max_new_tokens}) and temperature ({temperature}) must be >= 0"
            )
        with self._lock, torch.inference_mode():
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            started = time.perf_counter()
            encoded = [self._encode_prompt(prompt, max_new_tokens) for prompt in prompts]
            texts: list[str] = [""] * len(prompts)
            new_tokens = 0
            if self.use_fast_decode and temperature == 0 and max_new_tokens > 0 and encoded:
                texts, new_tokens = self._decode_fast(encoded, max_new_tokens, stop)
                encoded_batches: list[list[int]] = []
            else:
                encoded_batches = _equal_length_batches(encoded, GENERATE_BATCH_SIZE)
            for indices in encoded_batches:
                batch = torch.tensor([encoded[i] for i in indices], device=self.device)
                outputs, counts = self._decode_batch(
                    batch, indices, max_new_tokens, temperature, stop, seed
                )
                for index, text in zip(indices, outputs):
                    texts[index] = text
                new_tokens += counts
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            wall = time.perf_counter() - started
        result = GenerationResult(
            texts=texts,
            prompt_tokens=sum(len(tokens) for tokens in encoded),
            new_tokens=new_tokens,
            wall_time_s=wall,
            tokens_per_s=new_tokens / wall if wall > 0 else 0.0,
            peak_memory_bytes=self._peak_memory(),
            device=str(self.device),
        )
        self.last_stats = result
        return result

    def loglikelihood(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        batch_size: int | None = None,
        special_tokens: str = SPECIAL_TOKENS_DEFAULT,
        prefix_cache: bool = True,
        min_prefix_tokens: int = 32,
        invariant: bool = True,
    ) -> list[float]:
        """Sum of log-probabilities of each continuation given its context (lm-eval style).

        Encoding follows lm-evaluation-harness 0.4's ``HFLM`` (see :meth:`encode_pair`):
        trailing whitespace of the context moves to the continuation; the continuation tokens
        are those of ``encode(context + continuation)`` after the ``encode(context)`` prefix; an
        empty context becomes the BOS (else EOS) token; long inputs are truncated on the left.
        Scoring goes through :class:`models_zoo.scoring.PrefixTreeScorer`; in its invariant
        mode (the default) a score depends only on its own pair: not on ``batch_size``, the
        order of ``pairs`` or which other pairs are scored with it (fp32: bit for bit). On
        CUDA it goes through :class:`models_zoo.scoring_wide.WideScorer` (wide padded passes;
        scores agree across batch sizes and orders within bf16 rounding, not bit for bit):
        :meth:`scoring_mode` says which.

        Args:
            pairs: ``(context, continuation)`` pairs.
            batch_size: Most rows per forward batch (``None``: :meth:`default_batch_size`).
            special_tokens: ``"tokenizer"`` (the tokenizer's own special tokens, e.g. Llama's
                BOS, as lm-eval does by default) or ``"none"`` (lm-eval ``add_bos_token=False``).
            prefix_cache: Share common token prefixes through KV caches (off: plain batches).
            min_prefix_tokens: Fewest recomputed tokens a shared prefix must save to run alone.

        Raises:
            ValueError: On a non-positive ``batch_size`` or an unknown ``special_tokens``.
        """
        if batch_size is None:
            batch_size = self.default_batch_size()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        requests = self.encode_pairs(pairs, special_tokens=special_tokens)
        with self._lock:
            mode = self.scoring_mode(prefix_cache, invariant)
            scorer = self._scorer(mode, prefix_cache, min_prefix_tokens, invariant)
            # Without chunks (zoo models, prefix_cache off) invariance means one input per pass.
            rows = 1 if mode.endswith("_single") else batch_size
            scores = scorer.score(requests, batch_size=rows)
            self.tokens_processed += scorer.tokens_processed
            self.last_greedy = scorer.greedy
        return scores

    def render_chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """``messages`` in the tokenizer's chat template, ending with the assistant's turn open.

        Raises:
            ValueError: If the tokenizer has no chat template.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.path} has no chat template (tokenizer_config.json)")
        text = self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def encode_pair(
        self, context: str, continuation: str, *, special_tokens: str = SPECIAL_TOKENS_DEFAULT
    ) -> tuple[list[int], int]:
        """Tokens of context + continuation (left-truncated to the window plus one) and how
        many of the last ones are the continuation, as lm-eval 0.4's ``HFLM`` encodes them.

        With ``special_tokens="tokenizer"``, context and context + continuation are each
        encoded with the tokenizer's special tokens (a text that already starts with the
        prefix token gets none); the continuation is what ``encode(context + continuation)``
        has beyond ``len(encode(context))``.
        """
        _check_special_tokens(special_tokens)
        return self._pair_tokens(
            context, continuation, lambda text: self._encode_scored(text, special_tokens)
        )

    def encode_pairs(
        self, pairs: Sequence[tuple[str, str]], *, special_tokens: str = SPECIAL_TOKENS_DEFAULT
    ) -> list[tuple[list[int], int]]:
        """:meth:`encode_pair` of every pair, the same tokens, with each distinct text
        (a context shared by several choices, say) encoded once, in the tokenizer's batch
        call (which runs on several threads): on a GPU, encoding one pair at a time took as
        long as scoring it."""
        _check_special_tokens(special_tokens)
        owners: dict[str, str] = {}  # each text to encode -> its context
        for context, continuation in pairs:
            context, continuation = _move_spaces(context, continuation)
            if context:
                owners[context] = owners[context + continuation] = context
        texts = {
            text: (special_tokens != "none" and not self._starts_with_prefix(text), context)
            for text, context in owners.items()
        }
        if self._splits_safely:  # shared pieces once (models_zoo.pieces), the same tokens
            encoded = encode_texts(texts, self._encode_batch)
        else:
            encoded = {}
            for special in (False, True):
                batch = [text for text, (flag, _) in texts.items() if flag is special]
                if batch:
                    encoded.update(zip(batch, self._encode_batch(batch, special), strict=True))
        return [self._pair_tokens(c, x, encoded.__getitem__) for c, x in pairs]

    def _encode_batch(self, texts: list[str], special: bool) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=special)["input_ids"]
        return [list(row) for row in ids]

    def _pair_tokens(
        self, context: str, continuation: str, encode: Callable[[str], list[int]]
    ) -> tuple[list[int], int]:
        context, continuation = _move_spaces(context, continuation)
        if context:
            context_tokens = encode(context)
            whole = encode(context + continuation)
            continuation_tokens = whole[len(context_tokens) :]
        else:
            continuation_tokens = self._encode(continuation)
            if continuation_tokens and continuation_tokens[0] == self._prefix_token:
                context_tokens, continuation_tokens = [self._prefix_token], continuation_tokens[1:]
            else:
                context_tokens = [self._prefix_token]
        sequence = (context_tokens + continuation_tokens)[-(self.max_length + 1) :]
        return sequence, min(len(continuation_tokens), len(sequence) - 1)

    def scoring_settings(self, special_tokens: str = SPECIAL_TOKENS_DEFAULT) -> dict[str, Any]:
        """What decides the tokens scored, for the provenance of a results document."""
        plain = self._encode("a")
        scored = self._encode_scored("a", special_tokens)
        return {
            "convention": "lm-evaluation-harness 0.4 HFLM loglikelihood encoding",
            "special_tokens": special_tokens,
            "special_tokens_added": scored[: len(scored) - len(plain)] if scored != plain else [],
            "empty_context_token": self._prefix_token,
            "max_length": self.max_length,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": str(self.device),
            **({"fused_activations": self.fused_activations} if self.fused_activations else {}),
        }

    def scoring_mode(self, prefix_cache: bool = True, invariant: bool = True) -> str:
        """How ``loglikelihood`` scores, for the provenance: ``"wide"`` (CUDA: wide padded
        passes, scores within bf16 rounding of each other across batch sizes),
        ``"invariant_chunks"`` (bit-identical across batch sizes and orders),
        ``"prefix_tree"``, ``"plain"`` (batched, no prefix sharing), or with ``_single``
        one input per pass (invariant without chunks: zoo models, ``prefix_cache`` off,
        soft-capped logits)."""
        fast = prefix_cache and not self._is_zoo
        if fast and not self._capped_logits():
            implementation = getattr(self.model.config, "_attn_implementation", None) or "eager"
            if self.use_wide_scoring and implementation in SUPPORTED_ATTENTION:
                return "wide"
            return "invariant_chunks" if invariant else "prefix_tree"
        name = "prefix_tree" if fast else "plain"
        return name + "_single" if invariant else name

    def default_batch_size(self) -> int:
        """Rows per scoring pass when the caller names none (few on CPU, hundreds on CUDA)."""
        return DEFAULT_SCORING_ROWS.get(self.scoring_mode(), 16)

    def _capped_logits(self) -> bool:
        # Soft-capped or scaled logits need the model's own head; the split head would skip it.
        return any(
            getattr(self.model.config, name, None)
            for name in ("final_logit_softcapping", "logit_scale")
        )

    def _scorer(
        self, mode: str, prefix_cache: bool, min_prefix_tokens: int, invariant: bool
    ) -> PrefixTreeScorer | WideScorer:
        if mode == "wide":
            return WideScorer(
                self.model,
                cache_argument=self._cache_argument,
                min_prefix_tokens=min_prefix_tokens,
                pad_token=self._pad_token,
                share_prefix=self.wide_share_prefix,
            )
        return PrefixTreeScorer(
            self.model,
            cache_argument=self._cache_argument,
            prefix_cache=prefix_cache and not self._is_zoo,
            split_head=not (self._is_zoo or self._capped_logits()),
            min_prefix_tokens=min_prefix_tokens,
            pad_token=self._pad_token,
            chunk_tokens=CHUNK_TOKENS if invariant else 0,
        )

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode_scored(self, text: str, special_tokens: str) -> list[int]:
        if special_tokens == "none" or self._starts_with_prefix(text):
            return self._encode(text)
        return list(self.tokenizer(text)["input_ids"])

    def _starts_with_prefix(self, text: str) -> bool:
        return bool(self._prefix_text) and text.startswith(self._prefix_text)

    def _encode_prompt(self, prompt: str, max_new_tokens: int) -> list[int]:
        tokens = self._encode(prompt) or [self._prefix_token]
        keep = max(1, self.max_length - max_new_tokens)
        return tokens[-keep:]

    def _decode_batch(
        self,
        batch: torch.Tensor,
        indices: list[int],
        max_new_tokens: int,
        temperature: float,
        stop: Sequence[str],
        seed: int,
    ) -> tuple[list[str], int]:
        """Generate for one (B, T) batch of equal-length prompts; returns texts and token count."""
        B = batch.shape[0]
        generated: list[list[int]] = [[] for _ in range(B)]
        finished = [max_new_tokens == 0] * B
        generators = [self._generator(seed, index) for index in indices]
        cache = DynamicCache(config=self.model.config)
        step_input = batch
        eos = self.tokenizer.eos_token_id
        for _ in range(max_new_tokens):
            if all(finished):
                break
            step = {"input_ids": step_input, self._cache_argument: cache, "use_cache": True}
            logits = self.model(**step).logits[:, -1]
            next_tokens = self._choose(logits.float(), temperature, generators)
            for row, token in enumerate(next_tokens):
                if finished[row]:
                    continue
                if token == eos:
                    finished[row] = True
                    continue
                generated[row].append(token)
                if len(generated[row]) >= max_new_tokens or (
                    stop and _find_stop(self._decode(generated[row]), stop) is not None
                ):
                    finished[row] = True
            step_input = torch.tensor(next_tokens, device=self.device)[:, None]  # (B,) -> (B, 1)
        texts = []
        for tokens in generated:
            text = self._decode(tokens)
            cut = _find_stop(text, stop)
            texts.append(text if cut is None else text[:cut])
        return texts, sum(len(tokens) for tokens in generated)

    def _decode_fast(
        self, encoded: list[list[int]], max_new_tokens: int, stop: Sequence[str]
    ) -> tuple[list[str], int]:
        """Greedy decoding of all prompts in left-padded batches through the fast decoder."""
        from models_zoo.fast_decode import generate_fast, needs_unpadded

        eos = self.tokenizer.eos_token_id
        texts: list[str] = [""] * len(encoded)
        count = 0
        if needs_unpadded(self.model):  # LongNet: one prompt length per batch
            batches = _equal_length_batches(encoded, GENERATE_BATCH_SIZE)
        else:
            every = list(range(len(encoded)))
            batches = [
                every[start : start + GENERATE_BATCH_SIZE]
                for start in range(0, len(encoded), GENERATE_BATCH_SIZE)
            ]
        for indices in batches:
            chunk = [encoded[i] for i in indices]
            tokens = generate_fast(
                self.model,
                chunk,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=self._pad_token,
            ).tolist()
            for index, row in zip(indices, tokens):
                kept = row[: row.index(eos)] if eos is not None and eos in row else row
                text = self._decode(kept)
                cut = _find_stop(text, stop)
                if cut is not None:
                    text = text[:cut]
                    kept = self._encode(text)
                texts[index] = text
                count += len(kept)
        return texts, count

    def _choose(
        self, logits: torch.Tensor, temperature: float, generators: list[torch.Generator]
    ) -> list[int]:
        if temperature == 0:
            return [int(token) for token in logits.argmax(dim=-1).tolist()]
        probs = torch.softmax(logits / temperature, dim=-1)
        return [
            int(torch.multinomial(row, 1, generator=generator))
            for row, generator in zip(probs, generators)
        ]

    def _generator(self, seed: int, index: int) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed((seed * 1_000_003 + index) % (2**63))
        return generator

    def _decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def _peak_memory(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _check_special_tokens(special_tokens: str) -> None:
    if special_tokens not in SPECIAL_TOKEN_CHOICES:
        raise ValueError(
            f"special_tokens must be one of {SPECIAL_TOKEN_CHOICES}, got {special_tokens!r}"
        )


def _move_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: the context's trailing whitespace moves to the continuation."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        return context[:-spaces], context[-spaces:] + continuation
    return context, continuation


def _is_llama_shaped(model: torch.nn.Module) -> bool:
    inner = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    return (
        inner is not None and hasattr(model, "lm_head") and all(hasattr(inner, n) for n in needed)
    )


def _find_stop(text: str, stop: Sequence[str]) -> int | None:
    positions = [text.find(marker) for marker in stop if marker]
    found = [position for position in positions if position >= 0]
    return min(found) if found else None


def _equal_length_batches(encoded: list[list[int]], batch_size: int) -> list[list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for index, tokens in enumerate(encoded):
        groups[len(tokens)].append(index)
    return [
        indices[start : start + batch_size]
        for _, indices in sorted(groups.items())
        for start in range(0, len(indices), batch_size)
    ]


class TanhGelu(torch.nn.Module):
    """GPT-2's tanh GELU, ``0.5 x (1 + tanh(z))`` with ``z = sqrt(2/pi) (x + 0.044715 x^3)``.

    On CPU it is computed as ``x sigmoid(2z)``, the same function (``1 + tanh(z) = 2
    sigmoid(2z)``), in four in-place passes: torch's fused ``gelu(approximate="tanh")`` CPU
    kernel evaluates a vectorised tanh at about 4 ns an element on one core, and this form
    takes 40 % of that (bench/RESULTS.md, issue 17); it is within 5e-7 of transformers' own
    module on unit-scale inputs, and elementwise, so a row's values do not depend on the
    other rows. Other devices keep torch's fused kernel (one launch), as does autograd."""

    SCALE = 2.0 * 0.7978845608028654  # 2 sqrt(2/pi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
            return torch.nn.functional.gelu(x, approximate="tanh")
        z = x * x
        z.mul_(0.044715 * self.SCALE).add_(self.SCALE).mul_(x)
        return torch.sigmoid_(z).mul_(x)


def _fuse_tanh_gelu(model: torch.nn.Module) -> list[str]:
    """Compute GPT-2's tanh GELU (``NewGELUActivation``/``FastGELUActivation``, five
    elementwise passes in Python) as :class:`TanhGelu`: the same function, another rounding
    (within 5e-7 of it on unit-scale inputs); on CPU the Python module was a fifth of a small
    GPT-2's scoring time (bench/RESULTS.md, issue 17). Returns what was replaced, with the
    form, for the provenance."""
    from transformers.activations import FastGELUActivation, NewGELUActivation

    replaced = set()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(module, name, TanhGelu())
                replaced.add(f"{type(child).__name__}:sigmoid-form-on-cpu")
    return sorted(replaced)


def _context_length(config: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_LENGTH


_CACHE: dict[tuple[Any, ...], ServedModel] = {}
_CACHE_LOCK = threading.Lock()


def load(
    path: str | Path,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    quantize: str | None = None,
    max_memory: MaxMemory = None,
) -> ServedModel:
    """Load a zoo or transformers causal-LM checkpoint directory, cached per process.

    Args:
        path: Local HF-format directory (config.json, safetensors weights, tokenizer).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``None`` (bfloat16 on CUDA, float32 on CPU), a name in :data:`DTYPES` or a
            ``torch.dtype``.
        quantize: ``None`` or ``"int8"`` (``models_zoo.quantization.quantize_model_int8``).
        max_memory: ``None``, bytes, or a per-device dict like ``{"cuda": "2GiB", "cpu": "64GiB"}``
            (``models_zoo.offload.apply_cpu_offload``).

    Returns:
        The cached :class:`ServedModel` for these arguments.

    Raises:
        FileNotFoundError: If ``path`` is not a checkpoint directory.
        ValueError: On pickled or missing weights, bad ``device``/``dtype``/``quantize``, or
            weights that do not match the architecture.
    """
    resolved = Path(path).expanduser().resolve()
    if not (resolved / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a checkpoint directory (no config.json)")
    target = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, target)
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    key = (str(resolved), str(target), str(torch_dtype), quantize, _freeze(max_memory))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load_uncached(resolved, target, torch_dtype, quantize, max_memory)
        return _CACHE[key]


def _load_uncached(
    path: Path,
    device: torch.device,
    dtype: torch.dtype,
    quantize: str | None,
    max_memory: MaxMemory,
) -> ServedModel:
    weight_files(path)  # refuses pickled weights before transformers sees the directory
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    loaded: tuple[Any, dict[str, Any]] = AutoModelForCausalLM.from_pretrained(  # type: ignore[assignment]
        path,
        config=config,
        dtype=dtype,
        use_safetensors=True,
        trust_remote_code=False,
        output_loading_info=True,
    )
    model, info = loaded
    problems = {name: info.get(name) for name in ("missing_keys", "unexpected_keys")}
    problems = {name: sorted(keys) for name, keys in problems.items() if keys}
    if problems or info.get("mismatched_keys"):
        raise ValueError(f"weights in {path} do not match {type(model).__name__}: {problems}")
    model.eval()
    if quantize == "int8":
        model = quantize_model_int8(model)
    if max_memory is not None:
        model = apply_cpu_offload(model, max_memory=max_memory, device=device)  # type: ignore[arg-type]
    else:
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    logger.info("loaded %s (%s) on %s as %s", path, config.model_type, device, dtype)
    served = ServedModel(model, tokenizer, path=path, device=device, digest=weights_digest(path))
    if served.use_fast_decode:
        warm_up_fast_decoder(served)
    return served


def warm_up_fast_decoder(served: ServedModel) -> None:
    """Compile the fast decoder's Triton kernels now, not in the first request (a fresh
    worker's first arena answer took 2x longer: bench/RESULTS.md, issue 19). A decoder that
    fails here (a kernel this card or this Triton cannot build or run) is switched off for the
    model, which then decodes through the plain path: slower, never wrong; the error is
    logged with its traceback."""
    from models_zoo.fast_decode import warm_up

    try:
        seconds = warm_up(served.model)
    except Exception:  # any compile or launch failure: keep serving on the plain path
        logger.exception("fast decoder of %s failed its warm-up: plain decoding", served.path)
        served.use_fast_decode = served.use_fast_chat = False
        return
    logger.info("warmed up the fast decoder of %s in %.2f s", served.path, seconds)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available")
    return resolved


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be None or one of {sorted(DTYPES)}, got {dtype!r}")


def _freeze(max_memory: MaxMemory) -> Any:
    if isinstance(max_memory, Mapping):
        return tuple(sorted((str(key), str(value)) for key, value in max_memory.items()))
    return max_memory
