"""Check that a submitted checkpoint's chat template renders, as transformers would render it.

A chat template is a Jinja template from the submitter, so it is untrusted code. transformers
renders it in Jinja's ``ImmutableSandboxedEnvironment`` with ``trim_blocks``/``lstrip_blocks``,
the ``loopcontrols`` extension, a ``{% generation %}`` block tag, a ``tojson`` filter that does not
escape HTML, and the globals ``raise_exception``, ``strftime_now``, ``dict`` and ``namespace``;
:func:`render_chat_template` builds the same environment (jinja2 only: the web process never
imports transformers or torch). The sandbox stops attribute escapes but not a template that
loops for hours or builds a huge string, so :func:`check_chat_templates` renders in a child
Python process with CPU, memory and wall-clock limits.

This module imports nothing from Django (the child runs it as a script, ``python -I``); callers
turn :class:`ChatTemplateError` into their own errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"  # where transformers >= 4.43 saves a single template
MAX_TEMPLATE_CHARS = 1 << 20
MAX_CONFIG_BYTES = 32 << 20  # tokenizer_config.json can list many added tokens, not this
MAX_RENDERED_CHARS = 1 << 20
CHILD_CPU_S = 5
CHILD_MEMORY_BYTES = 1 << 30
CHILD_WALL_S = 30.0
SPECIAL_TOKENS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# Alternating user/assistant turns without a system message: some templates (Gemma's) refuse
# a system role, and most refuse two user turns in a row.
SAMPLE_CONVERSATION = (
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Italy?"},
)


class ChatTemplateError(ValueError):
    """A chat template that cannot be read or rendered; ``file`` names where it came from."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file


def find_chat_templates(directory: Path) -> dict[str, str]:
    """The chat templates of a checkpoint directory, keyed by a label that names their file.

    Raises:
        ChatTemplateError: ``tokenizer_config.json`` is not a JSON object, or its
            ``chat_template`` is neither a string nor a list of ``{"name", "template"}``.
    """
    templates: dict[str, str] = {}
    config_path = directory / CONFIG_FILE
    if config_path.is_file():
        config = _read_config(config_path)
        templates.update(_config_templates(config.get("chat_template")))
    template_path = directory / TEMPLATE_FILE
    if template_path.is_file():
        if template_path.stat().st_size > MAX_TEMPLATE_CHARS * 4:
            raise ChatTemplateError(TEMPLATE_FILE, f"longer than {MAX_TEMPLATE_CHARS} characters")
        try:
            templates[TEMPLATE_FILE] = template_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ChatTemplateError(TEMPLATE_FILE, "is not UTF-8 text") from None
    for label, template in templates.items():
        if len(template) > MAX_TEMPLATE_CHARS:
            raise ChatTemplateError(label, f"longer than {MAX_TEMPLATE_CHARS} characters")
    return templates


def _read_config(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ChatTemplateError(CONFIG_FILE, f"larger than {MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ChatTemplateError(CONFIG_FILE, f"is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ChatTemplateError(CONFIG_FILE, "must be a JSON object")
    return config


def _config_templates(value: Any) -> dict[str, str]:
    label = f"{CONFIG_FILE} chat_template"
    if value is None:
        return {}
    if isinstance(value, str):
        return {label: value}
    if isinstance(value, list):
        found = {}
        for entry in value:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("name"), str)
                and isinstance(entry.get("template"), str)
            ):
                raise ChatTemplateError(
                    CONFIG_FILE, 'chat_template entries must be {"name": str, "template": str}'
                )
            found[f"{label} {entry['name']!r}"] = entry["template"]
        return found
    raise ChatTemplateError(
        CONFIG_FILE, f"chat_template must be a string or a list, not {type(value).__name__}"
    )


def special_tokens(directory: Path) -> dict[str, str]:
    """The special tokens transformers passes to the template (``bos_token``...), as strings."""
    config_path = directory / CONFIG_FILE
    config = _read_config(config_path) if config_path.is_file() else {}
    tokens = {}
    for name in SPECIAL_TOKENS:
        value = config.get(name)
        if isinstance(value, dict):  # a serialised AddedToken
            value = value.get("content")
        if isinstance(value, str):
            tokens[name] = value
    return tokens


def render_chat_template(
    template: str,
    messages: list[dict[str, Any]],
    *,
    tokens: dict[str, str] | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Render ``template`` in a sandbox set up like transformers' ``apply_chat_template``.

    Raises:
        jinja2.TemplateError: Syntax errors, ``raise_exception``, undefined names, sandbox
            violations; other exceptions (``TypeError``...) pass through unchanged.
    """
    environment = _environment()
    compiled = environment.from_string(template)
    return compiled.render(
        messages=messages,
        tools=None,
        documents=None,
        add_generation_prompt=add_generation_prompt,
        **(tokens or {}),
    )


class GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant text; rendered as is."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        call = self.call_method("_render_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return str(caller())


def _check_namespace_name(name: Any) -> None:
    if isinstance(name, str) and name.startswith("_"):
        raise jinja2.exceptions.SecurityError(f"namespace attribute {name!r} is not allowed")


class TemplateNamespace(jinja2.utils.Namespace):
    """``namespace()`` that refuses underscore names (no way to reach CPython internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, rest = args[0], args[1:]
        attributes = dict(*rest, **kwargs)
        for name in attributes:
            _check_namespace_name(name)
        jinja2.utils.Namespace.__init__(self, attributes)

    def __setitem__(self, name: str, value: Any) -> None:
        _check_namespace_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)


class TemplateDict:
    """``dict(...)`` without the type itself (no ``dict.__class__`` tricks)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    # Unlike Jinja's own tojson, no HTML escaping: templates emit JSON for the model, not a page.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _environment() -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = _tojson
    environment.globals.update(
        raise_exception=_raise_exception,
        strftime_now=_strftime_now,
        dict=TemplateDict(),
        namespace=TemplateNamespace,
    )
    return environment


def render_sample(template: str, tokens: dict[str, str]) -> str:
    """Render the sample conversation with a generation prompt; a problem is a ``ValueError``."""
    messages = [dict(message) for message in SAMPLE_CONVERSATION]
    try:
        text = render_chat_template(template, messages, tokens=tokens)
    except jinja2.TemplateSyntaxError as error:
        raise ValueError(f"does not compile (line {error.lineno}: {error.message})") from None
    except jinja2.TemplateError as error:
        raise ValueError(f"fails to render a sample conversation ({error})") from None
    except (RecursionError, MemoryError):
        raise ValueError("fails to render a sample conversation (too deep or too large)") from None
    except Exception as error:  # noqa: BLE001 - any error inside the template is the template's
        raise ValueError(
            f"fails to render a sample conversation ({type(error).__name__}: {error})"
        ) from None
    if len(text) > MAX_RENDERED_CHARS:
        raise ValueError(f"renders more than {MAX_RENDERED_CHARS} characters for three messages")
    if SAMPLE_CONVERSATION[-1]["content"] not in text:
        raise ValueError("renders a sample conversation without its last user message")
    return text


def check_chat_templates(directory: Path) -> int:
    """Render every chat template of ``directory`` in a limited child process.

    Returns:
        The number of templates checked (0 when the checkpoint has none).

    Raises:
        ChatTemplateError: Naming the file of the first template that does not render.
    """
    templates = find_chat_templates(directory)
    check_templates(templates, special_tokens(directory) if templates else {})
    return len(templates)


def check_templates(templates: dict[str, str], tokens: dict[str, str]) -> None:
    """Render each template (keyed by a label naming its file) in a limited child process.

    Raises:
        ChatTemplateError: Naming the label of the first template that does not render.
    """
    if not templates:
        return
    request = json.dumps(
        {
            "templates": templates,
            "tokens": tokens,
            "cpu_s": CHILD_CPU_S,
            "memory_bytes": CHILD_MEMORY_BYTES,
        }
    )
    try:
        child = subprocess.run(
            [sys.executable, "-I", str(Path(__file__).resolve())],
            input=request,
            capture_output=True,
            text=True,
            timeout=CHILD_WALL_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ChatTemplateError(
            _first_file(templates), f"rendering took longer than {CHILD_WALL_S:g} s"
        ) from None
    try:
        answer = json.loads(child.stdout)
    except json.JSONDecodeError:
        # Killed by a limit (SIGXCPU, or a MemoryError the interpreter could not report).
        raise ChatTemplateError(
            _first_file(templates),
            f"rendering exceeded the limits ({CHILD_CPU_S} s CPU, "
            f"{CHILD_MEMORY_BYTES >> 20} MiB; exit status {child.returncode})",
        ) from None
    if answer.get("error"):
        raise ChatTemplateError(answer["label"], answer["error"])


def _first_file(templates: dict[str, str]) -> str:
    return next(iter(templates))


def _child_main() -> None:
    """Child process: render each template of the request on stdin; one JSON answer on stdout."""
    import resource

    request = json.loads(sys.stdin.read())
    cpu_s, memory = int(request["cpu_s"]), int(request["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    for label, template in request["templates"].items():
        try:
            render_sample(template, request["tokens"])
        except ValueError as error:
            print(json.dumps({"label": label, "error": str(error)}))
            return
    print(json.dumps({"error": None}))


if __name__ == "__main__":
    _child_main()
