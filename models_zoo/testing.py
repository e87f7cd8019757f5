"""Cheap fixtures for tests across Ladder: tiny random-init checkpoints in a fraction of a second."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from models_zoo.baseline_transformer import DenseConfig, DenseForCausalLM
from models_zoo.checkpoint import ModelCard, save_checkpoint
from models_zoo.corpus import default_corpus_text
from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM
from models_zoo.tokenizer import train_tokenizer

TINY_ARCHITECTURES = ("dense", "longnet", "llama", "gpt2")
TINY_VOCAB_SIZE = 300
TINY_TEXT_CHARS = 8_000
TINY_CONTEXT = 256
# ChatML, as SmolLM2 and Qwen write it (a default system turn when none is given).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHAT_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>")


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer() -> Any:
    return train_tokenizer(default_corpus_text()[:TINY_TEXT_CHARS], TINY_VOCAB_SIZE)


def _tiny_model(arch: str, tokenizer: Any) -> PreTrainedModel:
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vocab = len(tokenizer)
    if arch in ("dense", "longnet"):
        sizes: dict[str, Any] = {
            "vocab_size": vocab,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": TINY_CONTEXT,
            **special,
        }
        if arch == "dense":
            return DenseForCausalLM(DenseConfig(**sizes))
        config = LongNetConfig(segment_lengths=[8, 16, 32], dilation_rates=[1, 2, 4], **sizes)
        return LongNetForCausalLM(config)
    if arch == "llama":
        return LlamaForCausalLM(
            LlamaConfig(
                vocab_size=vocab,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=TINY_CONTEXT,
                **special,
            )
        )
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=TINY_CONTEXT, **special
        )
    )


def make_tiny_checkpoint(out_dir: Path | str, arch: str = "dense", seed: int = 0) -> Path:
    """Write a random-init tiny model, tokenizer and model card as an HF directory.

    Args:
        out_dir: Directory to create (or overwrite files in).
        arch: ``"dense"``, ``"longnet"`` (zoo models) or ``"llama"``, ``"gpt2"`` (transformers).
        seed: Seeds the weights; the same seed gives identical files.

    Returns:
        ``out_dir`` as a ``Path``, loadable with ``models_zoo.serving.load``.

    Raises:
        ValueError: On an unknown ``arch``.
    """
    if arch not in TINY_ARCHITECTURES:
        raise ValueError(f"arch must be one of {TINY_ARCHITECTURES}, got {arch!r}")
    tokenizer = _tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        # Different architectures get different weights, so their digests differ too.
        torch.manual_seed(seed * len(TINY_ARCHITECTURES) + TINY_ARCHITECTURES.index(arch))
        model = _tiny_model(arch, tokenizer)
    card = ModelCard.for_training(
        name=f"tiny-{arch}-seed{seed}",
        architecture=model.config.model_type,
        parameters=int(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())),
        training_tokens=0,
        optimizer={"name": "none"},
        lr_schedule={"name": "none"},
        precision="fp32",
        steps=0,
        extra={"seed": seed, "random_init": True},
    )
    return save_checkpoint(model, tokenizer, Path(out_dir), card)


def tiny_chat_tokenizer() -> Any:
    """A fresh copy of the tiny tokenizer with ChatML special tokens and chat template;
    ``<|im_end|>`` is its EOS."""
    import copy

    tokenizer = copy.deepcopy(_tiny_tokenizer())
    tokenizer.add_special_tokens({"additional_special_tokens": list(CHAT_SPECIAL_TOKENS)})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def make_tiny_chat_checkpoint(out_dir: Path | str, seed: int = 0) -> Path:
    """A random-init tiny Llama with :func:`tiny_chat_tokenizer` (a chat model in miniature)."""
    tokenizer = tiny_chat_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1000 + seed)
        model = _tiny_model("llama", tokenizer)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    card = ModelCard.for_training(
        name=f"tiny-chat-llama-seed{seed}",
        architecture=model.config.model_type,
        parameters=int(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())),
        training_tokens=0,
        optimizer={"name": "none"},
        lr_schedule={"name": "none"},
        precision="fp32",
        steps=0,
        extra={"seed": seed, "random_init": True, "chat_template": "chatml"},
    )
    return save_checkpoint(model, tokenizer, Path(out_dir), card)


FEWSHOT_CORPUS = (
    "The quick brown fox jumps over the lazy dog. Question: Is it true? Answer: yes no True "
    "False Neither Maybe. Passage: a premise and a hypothesis; the pronoun refers to a noun. "
    "Sentence 1: he felt small. Sentence 2: she felt naked. because therefore the man the woman"
)


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _save_fewshot_tokenizer(
    out: Path, corpus: Iterable[str] | None, vocab_size: int, positions: int, *, llama_style: bool
) -> PreTrainedTokenizerFast:
    """Train the few-shot tokenizer and save it to ``out`` (created) for ``positions`` tokens."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _fewshot_tokenizer(corpus, vocab_size, llama_style=llama_style)
    tokenizer.model_max_length = positions
    tokenizer.save_pretrained(out)
    return tokenizer


def _fewshot_tokenizer(
    corpus: Iterable[str] | None, vocab_size: int, *, llama_style: bool
) -> PreTrainedTokenizerFast:
    """Byte-level BPE; Llama-style: ``<s>``/``</s>`` with a post-processor adding BOS."""
    specials = ["<s>", "</s>", "<unk>"] if llama_style else ["<|endoftext|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus or [FEWSHOT_CORPUS] * 4, trainer=trainer)
    if not llama_style:
        end = specials[0]
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer, bos_token=end, eos_token=end, unk_token=end
        )
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def make_tiny_llama(
    out_dir: str | Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    positions: int = 512,
    vocab_size: int = 400,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
    kv_heads: int | None = None,
    intermediate: int | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a random-init Llama whose locally trained tokenizer adds BOS (as Llama's does)
    and carries a chat template, to ``out_dir``; loads offline, also in lm-eval.

    ``kv_heads`` (grouped-query attention; default ``heads``) and ``intermediate`` (default
    ``2 * hidden``) shape bench models; ``device`` is where the weights are initialised (a
    GPU makes a 1B model in seconds) and ``dtype`` how they are saved.
    """
    out = Path(out_dir)
    tokenizer = _save_fewshot_tokenizer(out, corpus, vocab_size, positions, llama_style=True)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    with torch.device(device):
        model = LlamaForCausalLM(config)
    for parameter in model.parameters():  # (PreTrainedModel.to's wrapper defeats mypy)
        parameter.data = parameter.data.to(dtype)
    model.save_pretrained(out)
    return out


def make_tiny_causal_lm(
    out_dir: str | Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 2,
    positions: int = 512,
    vocab_size: int = 400,
    seed: int = 0,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Write a random-init GPT-2 model with a byte-level BPE tokenizer to ``out_dir``.

    It loads with ``AutoModelForCausalLM``/``AutoTokenizer`` offline (also in
    lm-evaluation-harness), in well under a second at the default size.

    Args:
        corpus: Texts to train the tokenizer on; the default, a few sentences, gives a
            near-byte-level vocabulary whatever ``vocab_size`` asks for. Real text and a
            vocabulary of thousands give real-LM token counts (benchmarks).

    Returns:
        ``out_dir`` as a Path.
    """
    out = Path(out_dir)
    wrapped = _save_fewshot_tokenizer(out, corpus, vocab_size, positions, llama_style=False)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(wrapped),
        n_positions=positions,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        bos_token_id=wrapped.bos_token_id,
        eos_token_id=wrapped.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(out)
    return out
