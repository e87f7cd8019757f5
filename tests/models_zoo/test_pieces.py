"""Few-shot texts encoded in shared pieces (models_zoo.pieces) give the whole-text tokens."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from models_zoo import serving
from models_zoo.pieces import cut_points, is_safe_cut, last_safe_cut, splits_safely

WORDS = ["True", "False", "premise", "x", "42", "3.14", "don't", "it's", "(a)", "é", "Ünïcode"]
SPACES = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n", ""]


def _random_text(rng: random.Random, words: int) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(SPACES) for _ in range(words))


def _pairs(rng: random.Random) -> list[tuple[str, str]]:
    """Contexts sharing demonstration blocks (and not), with several choices each."""
    blocks = [_random_text(rng, 30) + "\n\n" for _ in range(3)] + [""]
    pairs = []
    for _ in range(40):
        context = rng.choice(blocks) + _random_text(rng, rng.randint(0, 25)) + "Answer:"
        if rng.random() < 0.2:
            context += rng.choice([" ", "  ", "\n"])
        for choice in rng.sample([" True", " False", "True", " 42", " it's", "\nno"], 2):
            pairs.append((context, choice))
    return pairs + [("<s>Question: a b", " yes"), ("a b", "c"), ("x", " y")]


@pytest.mark.parametrize("special_tokens", ["tokenizer", "none"])
@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_model_dir"])
def test_pieces_give_the_whole_text_tokens_on_random_texts(
    request: pytest.FixtureRequest, fixture: str, special_tokens: str
) -> None:
    served = serving.load(request.getfixturevalue(fixture), device="cpu")
    assert served._splits_safely
    for seed in range(5):
        pairs = _pairs(random.Random(seed))
        got = served.encode_pairs(pairs, special_tokens=special_tokens)
        expected = [served.encode_pair(c, x, special_tokens=special_tokens) for c, x in pairs]
        assert got == expected


def test_pieces_give_the_whole_text_tokens_on_fewglue_prompts(
    tiny_llama_dir: Path, fewglue_dir: Path
) -> None:
    from evalcore.fewshot.data import load_task_data, records_to_docs
    from evalcore.fewshot.registry import get_task

    served = serving.load(tiny_llama_dir, device="cpu")
    for name in ("rte", "boolq", "copa"):
        spec = get_task(name)
        data = load_task_data(spec, fewglue_dir, limit=20)
        pattern = spec.patterns[0]
        demos = records_to_docs(spec, data.pool[:3])
        prefix = "".join(pattern.demonstration(d) + "\n\n" for d in demos)
        pairs = [
            (prefix + pattern.prompt(doc), pattern.continuation(doc, label))
            for doc in records_to_docs(spec, data.test)
            for label in spec.labels
        ]
        expected = [served.encode_pair(c, x) for c, x in pairs]
        assert served.encode_pairs(pairs) == expected


def test_a_metaspace_tokenizer_is_not_split() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"], show_progress=False)
    backend.train_from_iterator(["a b c premise hypothesis"] * 10, trainer)
    assert not splits_safely(PreTrainedTokenizerFast(tokenizer_object=backend))


def test_safe_cuts_are_single_spaces_between_non_spaces() -> None:
    text = "ab  c d\ne f"
    assert [i for i in range(len(text)) if is_safe_cut(text, i)] == [5, 9]
    assert last_safe_cut(text, len(text)) == 9
    assert last_safe_cut(text, 9) == 5
    assert last_safe_cut("abc", 3) == 0
    demo = "one two three.\n\n"
    cuts = cut_points([demo + "four five", demo + "six seven", "eight nine"])
    assert cuts[demo + "four five"] == (7, len(demo) + 4)
    assert cuts["eight nine"] == (0, 5)


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_model_dir"])
def test_a_text_cut_at_any_safe_cut_encodes_as_its_two_pieces(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    tokenizer = serving.load(request.getfixturevalue(fixture), device="cpu").tokenizer

    def encode(text: str, special: bool = False) -> list[int]:
        return list(tokenizer(text, add_special_tokens=special)["input_ids"])

    rng = random.Random(0)
    unsafe_differ = 0
    for _ in range(150):
        text = _random_text(rng, 12)
        for index in range(1, len(text)):
            pieces = encode(text[:index], True) + encode(text[index:])
            if is_safe_cut(text, index):
                assert pieces == encode(text, True), (text, index)
            elif text[index].isspace() or text[index - 1].isspace():
                unsafe_differ += pieces != encode(text, True)
    assert unsafe_differ  # cuts next to other whitespace do change tokens: the rule matters
