"""Byte-level BPE tokenizers trained locally with the ``tokenizers`` library (no downloads)."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
PADDING = "<|pad|>"
_CHUNK_CHARS = 10_000
# Byte-level BPE starts from 256 byte symbols plus the special tokens.
MIN_VOCAB_SIZE = 256 + 2


def train_tokenizer(text: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``text``; any string can be encoded afterwards.

    ``<|endoftext|>`` is BOS and EOS (id 0) and ``<|pad|>`` pads (id 1).

    Raises:
        ValueError: If ``vocab_size`` is below :data:`MIN_VOCAB_SIZE` or ``text`` is empty.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE}, got {vocab_size}")
    if not text:
        raise ValueError("cannot train a tokenizer on empty text")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT, PADDING],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    chunks = (text[start : start + _CHUNK_CHARS] for start in range(0, len(text), _CHUNK_CHARS))
    tokenizer.train_from_iterator(chunks, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, pad_token=PADDING
    )
