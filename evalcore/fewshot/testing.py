"""Helpers for tests and benchmarks: a small random-init GPT-2-shaped model directory."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CORPUS = (
    "The quick brown fox jumps over the lazy dog. Question: Is it true? Answer: yes no True "
    "False Neither Maybe. Passage: a premise and a hypothesis; the pronoun refers to a noun. "
    "Sentence 1: he felt small. Sentence 2: she felt naked. because therefore the man the woman"
)


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
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus or [CORPUS] * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    wrapped.model_max_length = positions
    wrapped.save_pretrained(out)
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
