"""Inspect a checkpoint directory without torch: config, safetensors headers, digest.

Runs in the web process. Nothing here deserialises weights: a safetensors file is an 8-byte
little-endian header length, a JSON header of tensor names, dtypes, shapes and byte offsets,
then raw bytes; the parameter count comes from the shapes in the header.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from core import jsonbody
from evalcore.digests import files_digest
from submissions.architectures import ALLOWED_ARCHITECTURES, ZOO_MODEL_TYPES
from submissions.archive import check_weight_name
from submissions.chat_template import ChatTemplateError, check_chat_templates, check_templates
from submissions.exceptions import SubmissionError
from submissions.gguf import GGUF_NAME, GGUFError, hf_architecture, read_header

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
CONVERTED_BYTES_PER_PARAMETER = 2  # the worker converts a GGUF to bfloat16 safetensors
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


@dataclass(frozen=True)
class CheckpointFacts:
    directory: Path
    architecture: str
    model_type: str
    parameters: int
    digest: str  # evalcore.digests.files_digest, as models_zoo.serving records it
    weight_files: tuple[str, ...]
    total_bytes: int


def find_model_directory(root: Path) -> Path:
    """``root`` or its single sub-directory, whichever holds ``config.json`` (or a GGUF file)."""
    if (root / "config.json").is_file() or (root / GGUF_NAME).is_file():
        return root
    children = [child for child in root.iterdir() if not child.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and (children[0] / "config.json").is_file():
        return children[0]
    raise SubmissionError(
        "missing_config", "archive: no config.json at the top level or in one top-level folder"
    )


def inspect_checkpoint(directory: Path, *, field: str = "archive") -> CheckpointFacts:
    """Check a Hugging Face model directory and compute its parameters and digest.

    Raises:
        SubmissionError: ``unsafe_weights``, ``archive_link``, ``missing_config``,
            ``invalid_config``, ``unsupported_architecture``, ``missing_weights``,
            ``invalid_safetensors``, ``missing_tokenizer`` or ``invalid_chat_template``.
    """
    total = _check_files(directory, field)
    if (directory / GGUF_NAME).is_file() and not (directory / "config.json").is_file():
        return inspect_gguf(directory / GGUF_NAME, total_bytes=total, field=field)
    config = _read_config(directory, field)
    architecture, model_type = _check_architecture(config, field)
    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        raise SubmissionError("missing_weights", f"{field}: no *.safetensors weights", field=field)
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise SubmissionError(
            "missing_tokenizer",
            f"{field}: no tokenizer files (one of {', '.join(TOKENIZER_FILES)})",
            field=field,
        )
    check_chat_template(directory, field=field)
    parameters = sum(count_parameters(path, field=field) for path in weights)
    return CheckpointFacts(
        directory=directory,
        architecture=architecture,
        model_type=model_type,
        parameters=parameters,
        digest=files_digest(weights),
        weight_files=tuple(path.name for path in weights),
        total_bytes=total,
    )


def check_chat_template(directory: Path, *, field: str = "archive") -> None:
    """Refuse a chat template (tokenizer_config.json, chat_template.jinja) that does not render."""
    try:
        check_chat_templates(directory)
    except ChatTemplateError as error:
        raise SubmissionError("invalid_chat_template", str(error), field=field) from None


def inspect_gguf(path: Path, *, total_bytes: int, field: str = "archive") -> CheckpointFacts:
    """Check a GGUF file's header, architecture and chat template (the worker converts it).

    Raises:
        SubmissionError: ``invalid_gguf`` (the message names the GGUF field),
            ``unsupported_architecture``, ``archive_too_large`` (the converted weights would
            exceed the unpacked limit) or ``invalid_chat_template``.
    """
    try:
        header = read_header(path)
    except GGUFError as error:
        raise SubmissionError("invalid_gguf", f"{field}: GGUF {error}", field=field) from None
    converted_bytes = header.parameters * CONVERTED_BYTES_PER_PARAMETER
    limit = int(settings.LADDER_SUBMISSION_MAX_UNPACKED_BYTES)
    if converted_bytes > limit:
        raise SubmissionError(
            "archive_too_large",
            f"{field}: the GGUF's {header.parameters:,} parameters convert to {converted_bytes} "
            f"bytes of bfloat16 weights, more than {limit}",
            field=field,
        )
    try:
        architecture = hf_architecture(header)
    except GGUFError as error:
        raise SubmissionError(
            "unsupported_architecture", f"{field}: GGUF {error}", field=field
        ) from None
    if header.chat_template is not None:
        label = "GGUF metadata 'tokenizer.chat_template'"
        try:
            check_templates({label: header.chat_template}, header.special_tokens())
        except ChatTemplateError as error:
            raise SubmissionError("invalid_chat_template", str(error), field=field) from None
    return CheckpointFacts(
        directory=path.parent,
        architecture=architecture,
        model_type=header.architecture,
        parameters=header.parameters,
        digest=files_digest([path]),
        weight_files=(path.name,),
        total_bytes=total_bytes,
    )


def _check_files(directory: Path, field: str) -> int:
    total = 0
    for path in directory.rglob("*"):
        relative = path.relative_to(directory).as_posix()
        if path.is_symlink():
            raise SubmissionError("archive_link", f"{field}: {relative!r} is a link", field=field)
        if path.is_file():
            check_weight_name(relative)
            total += path.stat().st_size
        elif not path.is_dir():
            raise SubmissionError(
                "archive_special_file", f"{field}: {relative!r} is not a regular file", field=field
            )
    return total


def _read_config(directory: Path, field: str) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise SubmissionError("missing_config", f"{field}: no config.json", field=field)
    try:
        config = jsonbody.loads(path.read_text(encoding="utf-8"), strict=False)
    except ValueError as error:  # also UnicodeDecodeError, and nesting past the limit
        raise SubmissionError(
            "invalid_config", f"config.json is not valid JSON ({error})", field=field
        ) from None
    if not isinstance(config, dict):
        raise SubmissionError("invalid_config", "config.json must be a JSON object", field=field)
    return config


def _check_architecture(config: dict[str, Any], field: str) -> tuple[str, str]:
    names = config.get("architectures")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise SubmissionError("invalid_config", "config.json: model_type is missing", field=field)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SubmissionError(
            "invalid_config",
            "config.json: architectures must be a non-empty list of class names",
            field=field,
        )
    allowed = [name for name in names if name in ALLOWED_ARCHITECTURES]
    if not allowed:
        raise SubmissionError(
            "unsupported_architecture",
            f"config.json: architectures {names} are not on the allow-list of causal LMs",
            field=field,
        )
    if config.get("auto_map"):
        raise SubmissionError(
            "unsupported_architecture",
            "config.json: auto_map (remote code) is not supported; remote code is never run",
            field=field,
        )
    if allowed[0] in ("DenseForCausalLM", "LongNetForCausalLM") and model_type not in (
        ZOO_MODEL_TYPES
    ):
        raise SubmissionError(
            "unsupported_architecture",
            f"config.json: model_type {model_type!r} does not match {allowed[0]}",
            field=field,
        )
    return allowed[0], model_type


def count_parameters(path: Path, *, field: str = "archive") -> int:
    """The number of parameters in a safetensors file, from its header alone."""

    def bad(problem: str) -> SubmissionError:
        return SubmissionError("invalid_safetensors", f"{path.name}: {problem}", field=field)

    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise bad("shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise bad(f"header length {length} exceeds the file")
        raw = handle.read(length)
    try:
        header = jsonbody.loads(raw.decode("utf-8"), strict=False)
    except ValueError:  # also UnicodeDecodeError, and nesting past the limit
        raise bad("the header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    data_bytes = size - 8 - length
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        total += _tensor_elements(name, entry, data_bytes, bad)
    _check_no_overlap(header, bad)
    return total


def _check_no_overlap(header: dict[str, Any], bad: Any) -> None:
    """Refuse tensors that share bytes: the loader refuses them, so validation does first."""
    ranges = sorted(
        (entry["data_offsets"][0], entry["data_offsets"][1], name)
        for name, entry in header.items()
        if name != "__metadata__" and entry["data_offsets"][0] != entry["data_offsets"][1]
    )
    for (_, end, first), (start, _, second) in zip(ranges, ranges[1:]):
        if start < end:
            raise bad(f"tensors {first!r} and {second!r} overlap in the file")


def _tensor_elements(name: str, entry: Any, data_bytes: int, bad: Any) -> int:
    if not isinstance(entry, dict):
        raise bad(f"tensor {name!r} has no description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise bad(f"tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_bytes
    ):
        raise bad(f"tensor {name!r} has data offsets {offsets!r} outside the file")
    elements = math.prod(shape)
    if offsets[1] - offsets[0] != elements * DTYPE_BYTES[dtype]:
        raise bad(f"tensor {name!r}: shape {shape} does not match its {dtype} byte range")
    return elements
