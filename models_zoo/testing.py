"""Cheap fixtures for tests across Ladder: tiny random-init checkpoints in a fraction of a second."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
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
