"""Chat templates of submitted checkpoints: rendered like transformers, refused naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from submissions import chat_template
from submissions.chat_template import (
    SAMPLE_CONVERSATION,
    ChatTemplateError,
    check_chat_templates,
    render_chat_template,
)
from tests.submissions.conftest import submit, tar_directory, validate_job

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Whitespace control (trim_blocks/lstrip_blocks), bos_token, namespace, tojson, loop controls,
# raise_exception on a bad role, and a {% generation %} block.
RICH = """{{ bos_token }}
{% set ns = namespace(turns=0) %}
{% for message in messages %}
    {% if message['role'] not in ['user', 'assistant'] %}
        {{ raise_exception('unknown role ' + message['role']) }}
    {% endif %}
    {% set ns.turns = ns.turns + 1 %}
    {% if message['role'] == 'assistant' %}
        {% generation %}[A{{ ns.turns }}] {{ message['content'] | trim }}{{ eos_token }}{% endgeneration %}
    {% else %}
        [U{{ ns.turns }}] {{ message | tojson }}
    {% endif %}
    {% if loop.index > 10 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}[A]{% endif %}"""


def with_tokenizer_config(directory: Path, **values: Any) -> Path:
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(values)
    path.write_text(json.dumps(config), encoding="utf-8")
    return directory


@pytest.mark.parametrize("template", [CHATML, RICH], ids=["chatml", "rich"])
def test_rendering_matches_transformers_apply_chat_template(
    template: str, checkpoint_copy: Callable[[], Path]
) -> None:
    from transformers import AutoTokenizer

    directory = with_tokenizer_config(checkpoint_copy(), chat_template=template)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    messages = [dict(message) for message in SAMPLE_CONVERSATION]
    for add_generation_prompt in (True, False):
        expected = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        ours = render_chat_template(
            template,
            messages,
            tokens=chat_template.special_tokens(directory),
            add_generation_prompt=add_generation_prompt,
        )
        assert ours == expected
    assert check_chat_templates(directory) == 1


def test_named_templates_and_chat_template_jinja_are_all_checked(
    checkpoint_copy: Callable[[], Path],
) -> None:
    directory = with_tokenizer_config(
        checkpoint_copy(),
        chat_template=[{"name": "default", "template": CHATML}, {"name": "rich", "template": RICH}],
    )
    (directory / "chat_template.jinja").write_text(CHATML, encoding="utf-8")
    assert check_chat_templates(directory) == 3
    (directory / "chat_template.jinja").write_text("{% for m in messages %}", encoding="utf-8")
    with pytest.raises(ChatTemplateError) as caught:
        check_chat_templates(directory)
    assert caught.value.file == "chat_template.jinja"


def test_template_saved_by_transformers_is_checked(tmp_path: Path) -> None:
    from models_zoo.testing import tiny_chat_tokenizer

    tiny_chat_tokenizer().save_pretrained(tmp_path)
    assert (tmp_path / "chat_template.jinja").is_file()
    assert check_chat_templates(tmp_path) >= 1


def test_checkpoint_without_template_needs_no_rendering(
    checkpoint_copy: Callable[[], Path],
) -> None:
    assert check_chat_templates(checkpoint_copy()) == 0


BAD_TEMPLATES = [
    ("{% for message in messages %}{{ message.content }", "does not compile"),
    ("{{ raise_exception('System role not supported') }}", "System role not supported"),
    ("{{ messages[0].content.__class__.__mro__ }}", "fails to render"),
    ("{{ messages.append(1) }}", "fails to render"),
    ("{{ namespace(_x=1) }}", "fails to render"),
    ("{{ messages[0]['content'] + 1 }}", "TypeError"),
    ("{{ undefined_function() }}", "fails to render"),
    ("Hello {{ messages[0].content }}", "without its last user message"),
    ("{% for i in range(100) %}{{ 'x' * 100000 }}{% endfor %}", "more than"),
]


@pytest.mark.parametrize(("template", "problem"), BAD_TEMPLATES)
def test_template_that_does_not_render_is_refused_naming_the_file(
    template: str, problem: str, checkpoint_copy: Callable[[], Path]
) -> None:
    directory = with_tokenizer_config(checkpoint_copy(), chat_template=template)
    with pytest.raises(ChatTemplateError) as caught:
        check_chat_templates(directory)
    assert caught.value.file.startswith("tokenizer_config.json")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{nope", "is not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"chat_template": 5}', "must be a string or a list"),
        ('{"chat_template": [{"name": "x"}]}', "entries must be"),
    ],
)
def test_unreadable_tokenizer_config_is_refused_naming_the_file(
    content: str, problem: str, checkpoint_copy: Callable[[], Path]
) -> None:
    directory = checkpoint_copy()
    (directory / "tokenizer_config.json").write_text(content, encoding="utf-8")
    with pytest.raises(ChatTemplateError) as caught:
        check_chat_templates(directory)
    assert caught.value.file == "tokenizer_config.json"
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "template",
    [
        # Ten billion loop steps: stopped by the child's CPU limit.
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        # A string doubled forty times: stopped by the child's memory limit.
        "{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
    ],
    ids=["cpu", "memory"],
)
def test_runaway_template_is_stopped_by_the_child_limits(
    template: str, checkpoint_copy: Callable[[], Path], monkeypatch: Any
) -> None:
    monkeypatch.setattr(chat_template, "CHILD_CPU_S", 1)
    monkeypatch.setattr(chat_template, "CHILD_MEMORY_BYTES", 256 << 20)
    directory = with_tokenizer_config(checkpoint_copy(), chat_template=template)
    with pytest.raises(ChatTemplateError) as caught:
        check_chat_templates(directory)
    assert caught.value.file.startswith("tokenizer_config.json")


@pytest.mark.django_db
def test_submission_with_broken_chat_template_fails_validation_with_invalid_chat_template(
    api: Client, checkpoint_copy: Callable[[], Path], tmp_path: Path
) -> None:
    directory = with_tokenizer_config(checkpoint_copy(), chat_template="{% if %}")
    response = submit(api, tar_directory(directory, tmp_path / "m.tar.gz"))
    assert response.status_code == 202, response.content  # the worker unpacks and checks it
    job = validate_job(response.json()["job"]["id"])
    assert (job.status, job.failed_step) == ("failed", "validate")
    assert job.reason.startswith("invalid_chat_template: ")
    assert "tokenizer_config.json" in job.reason


@pytest.mark.django_db
def test_submission_with_working_chat_template_is_accepted(
    api: Client, checkpoint_copy: Callable[[], Path], tmp_path: Path
) -> None:
    directory = with_tokenizer_config(checkpoint_copy(), chat_template=CHATML)
    response = submit(api, tar_directory(directory, tmp_path / "m.tar.gz"))
    assert response.status_code == 202, response.content
