"""Training CLI: HF-format output with a model card, offline default corpus, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models_zoo import serving
from models_zoo.corpus import default_corpus_text
from models_zoo.train import TrainSettings, main

CARD_KEYS = {
    "name",
    "architecture",
    "parameters",
    "training_tokens",
    "training_flops",
    "tokens_per_parameter",
    "optimizer",
    "lr_schedule",
    "precision",
    "steps",
}


def test_default_corpus_is_english_text_shipped_with_python() -> None:
    text = default_corpus_text()
    assert len(text) > 100_000
    assert "statement" in text and "the" in text


def test_cli_writes_loadable_hf_checkpoint_with_model_card(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(default_corpus_text()[:60_000], encoding="utf-8")
    out = tmp_path / "model"
    main(["--arch", "longnet", "--preset", "tiny", "--corpus", str(corpus), "--steps", "3",
          "--out", str(out), "--optimizer", "adamw8bit", "--no-progress"])  # fmt: skip
    names = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "model_card.json"} <= names
    card = json.loads((out / "model_card.json").read_text())
    assert CARD_KEYS <= set(card)
    assert card["training_tokens"] == 3 * 16 * 128
    assert card["training_flops"] == 6 * card["parameters"] * card["training_tokens"]
    assert card["optimizer"]["name"] == "adamw8bit"
    assert card["lr_schedule"]["name"] == "linear_warmup_cosine"
    assert card["architecture"] == "ladder_longnet" and card["steps"] == 3
    model = serving.load(out, device="cpu")
    assert model.num_parameters == card["parameters"]
    assert isinstance(model.generate(["The"], max_new_tokens=3)[0], str)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"arch": "rnn"}, "arch must be one of"),
        ({"preset": "huge"}, "preset must be one of"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"steps": 0}, "steps must be positive, got 0"),
    ],
)
def test_train_settings_reject_bad_values(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"arch": "dense", "preset": "tiny", "steps": 1, "out": Path("x")}
    with pytest.raises(ValueError, match=message):
        TrainSettings(**{**base, **fields})  # type: ignore[arg-type]
