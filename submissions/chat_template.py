"""Check a submitted chat template renders, without torch, the way transformers renders it.

transformers compiles chat templates in ``jinja2.sandbox.ImmutableSandboxedEnvironment`` with
``trim_blocks``/``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson`` filter and a
``raise_exception`` global; it renders ``messages`` with ``add_generation_prompt`` and the
special tokens. The same here, on a small sample conversation: a template that fails to compile,
raises, or renders nothing is refused with a 400 naming the file it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from submissions.exceptions import SubmissionError

TOKENIZER_CONFIG = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"  # transformers >= 4.43 saves the template beside it
SAMPLE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi. How can I help?"},
    {"role": "user", "content": "Name a colour."},
]
SPECIAL_TOKENS = ("bos_token", "eos_token", "pad_token", "unk_token")


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent
    )
    environment.globals["raise_exception"] = _raise_exception
    return environment


def templates_in(directory: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(file name, template, tokenizer config) for every chat template the checkpoint carries."""
    config_path = directory / TOKENIZER_CONFIG
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            loaded = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _refused(TOKENIZER_CONFIG, f"is not valid JSON ({error})") from None
        config = loaded if isinstance(loaded, dict) else {}
    found = []
    value = config.get("chat_template")
    if isinstance(value, str):
        found.append((TOKENIZER_CONFIG, value, config))
    elif isinstance(value, list):  # named templates: [{"name": ..., "template": ...}]
        for item in value:
            template = item.get("template") if isinstance(item, dict) else None
            if not isinstance(template, str):
                raise _refused(TOKENIZER_CONFIG, "chat_template entries need a template string")
            found.append((TOKENIZER_CONFIG, template, config))
    elif value is not None:
        raise _refused(TOKENIZER_CONFIG, "chat_template must be a string or a list")
    template_file = directory / TEMPLATE_FILE
    if template_file.is_file():
        found.append((TEMPLATE_FILE, template_file.read_text(encoding="utf-8"), config))
    return found


def check_chat_templates(directory: Path) -> int:
    """Render each chat template of ``directory`` on a sample; returns how many there are.

    Raises:
        SubmissionError: ``invalid_chat_template`` (400), naming the file.
    """
    templates = templates_in(directory)
    for name, template, config in templates:
        tokens = {key: _token_text(config.get(key)) for key in SPECIAL_TOKENS}
        try:
            compiled = _environment().from_string(template)
            text = compiled.render(messages=SAMPLE, add_generation_prompt=True, **tokens)
        except jinja2.exceptions.TemplateError as error:
            raise _refused(name, f"chat template does not render: {error}") from None
        except Exception as error:  # noqa: BLE001 - any failure inside a template is the template's
            raise _refused(name, f"chat template fails: {type(error).__name__}: {error}") from None
        if "Name a colour." not in text:
            raise _refused(name, "chat template renders without the conversation's messages")
    return len(templates)


def _token_text(value: Any) -> str:
    if isinstance(value, dict):  # AddedToken as saved: {"content": "<s>", ...}
        value = value.get("content")
    return value if isinstance(value, str) else ""


def _refused(name: str, problem: str) -> SubmissionError:
    return SubmissionError("invalid_chat_template", f"{name}: {problem}", field=name)
