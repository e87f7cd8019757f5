"""Chat formatting, stopping and streaming (models_zoo.chat) on tiny local models."""

from __future__ import annotations

import hashlib

import pytest
import torch

from models_zoo import chat, serving
from models_zoo.testing import make_tiny_chat_checkpoint, make_tiny_checkpoint, tiny_chat_tokenizer

CONVERSATION = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another one?"},
]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> serving.ServedModel:
    path = make_tiny_chat_checkpoint(tmp_path_factory.mktemp("chat") / "tiny-chat")
    return serving.load(path, device="cpu")


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> serving.ServedModel:
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("base") / "tiny-llama", arch="llama")
    return serving.load(path, device="cpu")


def test_render_matches_transformers_apply_chat_template() -> None:
    tokenizer = tiny_chat_tokenizer()
    rendered = chat.render(tokenizer, CONVERSATION)
    expected = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=False, add_generation_prompt=True
    )
    assert rendered.text == expected
    assert rendered.template == "chat_template"
    assert rendered.text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\nBlue.<|im_end|>\n"
        "<|im_start|>user\nAnother one?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert rendered.digest == hashlib.sha256(expected.encode()).hexdigest()
    # Special-token strings are encoded as their single ids, as the template's authors intend.
    tokens = chat.encode(tokenizer, rendered.text)
    assert tokens[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokens == tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, add_generation_prompt=True, return_dict=False
    )


def test_base_model_gets_the_plain_format(base_model: serving.ServedModel) -> None:
    rendered = chat.render(base_model.tokenizer, CONVERSATION)
    assert rendered.template == "plain"
    assert rendered.text == "Name a colour.\n\nBlue.\n\nAnother one?\n\n"
    single = chat.render(base_model.tokenizer, [{"role": "user", "content": "Hi"}])
    assert single.text == "Hi\n\n"  # one message: prompt + blank line, as before chat support


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "assistant", "content": "x"}],
        [{"role": "robot", "content": "x"}],
        [{"role": "user", "content": 3}],
    ],
)
def test_bad_conversations_are_refused(messages: list[dict[str, object]]) -> None:
    with pytest.raises(ValueError):
        chat.validate_messages(messages)  # type: ignore[arg-type]


def test_stop_ids_include_eos_and_end_of_turn() -> None:
    tokenizer = tiny_chat_tokenizer()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert set(chat.stop_token_ids(tokenizer)) == {end_of_turn, end_of_text}


def test_generation_stops_at_an_end_of_turn_id_and_never_emits_it(
    chat_model: serving.ServedModel,
) -> None:
    settings = chat.ChatSettings(max_new_tokens=12)
    prompt, tokens = chat.render_within(chat_model.tokenizer, CONVERSATION, budget_tokens=200)
    free = chat._decode(chat_model, prompt, tokens, settings, (), None)  # nothing stops it
    assert free.finish_reason == "length" and len(free.token_ids) == 12
    # Declare a token the model emits later an end-of-turn id: the answer is what came before.
    k = next(i for i in range(1, 12) if free.token_ids[i] not in free.token_ids[:i])
    stopped = chat._decode(chat_model, prompt, tokens, settings, (free.token_ids[k],), None)
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == free.token_ids[:k]
    assert stopped.text == chat_model.tokenizer.decode(free.token_ids[:k], skip_special_tokens=True)
    # The real stop ids of a ChatML model include <|im_end|>; generate() honours them.
    answer = chat.generate(chat_model, CONVERSATION, settings)
    assert not set(answer.token_ids) & set(chat.stop_token_ids(chat_model.tokenizer))


def test_stop_strings_are_cut_and_never_streamed(chat_model: serving.ServedModel) -> None:
    prompt, tokens = chat.render_within(chat_model.tokenizer, CONVERSATION, budget_tokens=200)
    settings = chat.ChatSettings(max_new_tokens=16)
    full = chat._decode(chat_model, prompt, tokens, settings, (), None).text
    assert len(full) > 6
    marker = full[4:7]
    seen: list[str] = []
    with_stop = chat.ChatSettings(max_new_tokens=16, stop=(marker,))
    answer = chat._decode(chat_model, prompt, tokens, with_stop, (), seen.append)
    assert answer.text == full[: full.find(marker)]
    assert answer.finish_reason == "stop"
    assert seen and seen[-1] == answer.text
    assert all(marker not in text for text in seen)
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:]))


def test_answer_record_has_prompt_digest_and_settings(chat_model: serving.ServedModel) -> None:
    settings = chat.ChatSettings(max_new_tokens=4, temperature=1.0, seed=7)
    answer = chat.generate(chat_model, CONVERSATION, settings)
    record = answer.record()
    rendered = chat.render(chat_model.tokenizer, CONVERSATION)
    assert record["prompt_sha256"] == rendered.digest
    assert record["template"] == "chat_template"
    assert record["temperature"] == 1.0 and record["seed"] == 7 and record["max_new_tokens"] == 4
    # Seeded sampling is reproducible.
    assert chat.generate(chat_model, CONVERSATION, settings).text == answer.text


def test_older_turns_are_dropped_to_fit_the_context() -> None:
    tokenizer = tiny_chat_tokenizer()
    long_history = [
        {"role": "user", "content": "word " * 60},
        {"role": "assistant", "content": "reply " * 60},
        {"role": "user", "content": "Short question?"},
    ]
    whole = len(chat.encode(tokenizer, chat.render(tokenizer, long_history).text))
    prompt, tokens = chat.render_within(tokenizer, long_history, budget_tokens=whole - 1)
    assert prompt.dropped_messages == 2
    assert prompt.text == chat.render(tokenizer, long_history[2:]).text
    assert len(tokens) < whole
    with pytest.raises(chat.ContextTooLong):
        chat.render_within(tokenizer, long_history, budget_tokens=3)


def test_a_context_no_longer_than_max_new_tokens_still_answers(
    chat_model: serving.ServedModel,
) -> None:
    # make run's trained demo models have a 128-token context and the arena asks for 128 new
    # tokens: every battle with one of them failed with ContextTooLong (room for 1 token).
    answer = chat.generate(
        chat_model, CONVERSATION, chat.ChatSettings(max_new_tokens=chat_model.max_length)
    )
    assert answer.prompt.dropped_messages == 2  # only the last message is kept
    assert answer.prompt.text == chat.render(chat_model.tokenizer, CONVERSATION[2:]).text
    room = chat_model.max_length - answer.prompt_tokens
    assert answer.settings.max_new_tokens == room == answer.record()["max_new_tokens"]
    assert 0 < answer.new_tokens <= room


def test_a_last_message_that_leaves_no_room_to_answer_is_refused(
    chat_model: serving.ServedModel,
) -> None:
    tokenizer = chat_model.tokenizer
    single = [{"role": "user", "content": "word " * 40}]
    length = len(chat.encode(tokenizer, chat.render(tokenizer, single).text))
    context = length + chat.MIN_ANSWER_TOKENS
    prompt, tokens = chat.fit_context(tokenizer, single, context=context, max_new_tokens=100)
    assert len(tokens) == length and prompt.dropped_messages == 0
    with pytest.raises(chat.ContextTooLong):
        chat.fit_context(tokenizer, single, context=context - 1, max_new_tokens=100)
    # Where the answer fits in full, the prompt keeps max_new_tokens free as before.
    with pytest.raises(chat.ContextTooLong):
        chat.fit_context(tokenizer, single, context=length + 3, max_new_tokens=4)
    assert chat.fit_context(tokenizer, single, context=length + 4, max_new_tokens=4)[1] == tokens


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        chat.ChatSettings(max_new_tokens=0)
    with pytest.raises(ValueError):
        chat.ChatSettings(temperature=-1.0)


TURNS = [
    [{"role": "user", "content": "Say something."}],
    CONVERSATION,
    CONVERSATION
    + [
        {"role": "assistant", "content": "Red, and green too."},
        {"role": "user", "content": "Which one do you like best, and why?"},
    ],
]


def transformers_greedy(
    served: serving.ServedModel, tokens: list[int], stops: list[int]
) -> list[int]:
    """transformers' own ``generate``: greedy, stopping at ``stops`` (not part of the answer)."""
    ids = torch.tensor([tokens])
    output = served.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=20,
        do_sample=False,
        eos_token_id=stops or None,
        pad_token_id=0,
    )
    new = output[0, len(tokens) :].tolist()
    ends = [i for i, token in enumerate(new) if token in stops]
    return new[: ends[0]] if ends else new


@pytest.mark.parametrize("turns", range(len(TURNS)))
def test_fast_chat_decoding_gives_transformers_greedy_tokens(
    chat_model: serving.ServedModel, monkeypatch: pytest.MonkeyPatch, turns: int
) -> None:
    assert chat_model.use_fast_chat  # a Llama on CPU: the static-cache decoder
    messages = TURNS[turns]
    prompt, tokens = chat.render_within(chat_model.tokenizer, messages, budget_tokens=400)
    settings = chat.ChatSettings(max_new_tokens=20)
    fast = chat._decode(chat_model, prompt, tokens, settings, (), None)  # nothing stops it
    assert list(fast.token_ids) == transformers_greedy(chat_model, tokens, [])
    # The model's own EOS / end-of-turn ids, as generate() applies them.
    answer = chat.generate(chat_model, messages, settings)
    stops = list(chat.stop_token_ids(chat_model.tokenizer))
    assert list(answer.token_ids) == transformers_greedy(chat_model, tokens, stops)
    # A token the model emits later, declared an end-of-turn id: both stop before it.
    k = next(i for i in range(3, 20) if fast.token_ids[i] not in fast.token_ids[:i])
    stop = fast.token_ids[k]
    stopped = chat._decode(chat_model, prompt, tokens, settings, (stop,), None)
    assert list(stopped.token_ids) == transformers_greedy(chat_model, tokens, [stop])
    assert stopped.token_ids == fast.token_ids[:k] and stopped.finish_reason == "stop"
    # The plain path (the model's own forward) streams the same text for a stop string.
    marker = fast.text[len(fast.text) // 2 :][:3]
    with_stop = chat.ChatSettings(max_new_tokens=20, stop=(marker,))
    streamed: dict[bool, list[str]] = {True: [], False: []}
    answers = {}
    for use_fast in (True, False):
        monkeypatch.setattr(chat_model, "use_fast_chat", use_fast)
        answers[use_fast] = chat._decode(
            chat_model, prompt, tokens, with_stop, (), streamed[use_fast].append
        )
    assert answers[True].token_ids == answers[False].token_ids
    assert answers[True].text == answers[False].text == fast.text[: fast.text.find(marker)]
    assert streamed[True] == streamed[False] and streamed[True]
    assert answers[True].finish_reason == "stop"


def test_sampled_fast_chat_answers_equal_the_plain_path(
    chat_model: serving.ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = chat.ChatSettings(max_new_tokens=16, temperature=1.0, seed=3)
    prompt, tokens = chat.render_within(chat_model.tokenizer, CONVERSATION, budget_tokens=400)
    answers = []
    for use_fast in (True, False):
        monkeypatch.setattr(chat_model, "use_fast_chat", use_fast)
        answers.append(chat._decode(chat_model, prompt, tokens, settings, (), None).token_ids)
    assert answers[0] == answers[1] and len(answers[0]) == 16


def test_only_fp32_dense_llamas_on_cpu_take_the_fast_chat_path(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = make_tiny_chat_checkpoint(tmp_path_factory.mktemp("chat-dtypes") / "tiny-chat")
    assert serving.load(path, device="cpu", dtype="float32").use_fast_chat
    assert not serving.load(path, device="cpu", dtype="bfloat16").use_fast_chat
    assert not serving.load(path, device="cpu", dtype="float32", quantize="int8").use_fast_chat
    gpt2 = make_tiny_checkpoint(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2", arch="gpt2")
    assert not serving.load(gpt2, device="cpu").use_fast_chat  # not Llama-shaped
