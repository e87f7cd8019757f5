"""Read a GGUF file's header in the web process: pure Python, no torch, no ``gguf`` package.

A GGUF file (llama.cpp's format; version 2 and 3) is little-endian: the magic ``GGUF``, a
uint32 version, uint64 tensor and metadata counts, the metadata as (string key, uint32 type,
value), then per tensor its name, uint32 dimension count, uint64 dimensions, uint32 ggml type
and uint64 offset into the data section, which starts at the next multiple of
``general.alignment`` (32 by default). Strings are a uint64 byte length and UTF-8 bytes. It
holds tensors and metadata only, never code.

Every count and length is checked against a bound and against the bytes left in the file before
anything is read or allocated, and each refusal names the field (``GGUFError.field``). The
worker converts an accepted file to safetensors (:func:`convert_gguf`, transformers).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
VERSIONS = (2, 3)
GGUF_NAME = "model.gguf"  # the upload's name inside its checkpoint folder
CONVERTED_NAME = "converted"  # the worker's safetensors folder beside it
DEFAULT_ALIGNMENT = 32
MAX_TENSORS = 100_000
MAX_METADATA = 100_000
MAX_KEY_BYTES = 1024
MAX_STRING_BYTES = 16 << 20  # a chat template is large; a tokenizer's tokens are many, not large
MAX_ARRAY_ITEMS = 1 << 20  # vocabularies and merge lists are a few hundred thousand
MAX_STRINGS = 4 << 20  # in all: parsing each costs Python time in the web process
MAX_HEADER_BYTES = 64 << 20
MAX_NAME_BYTES = 256  # GGML_MAX_NAME is 64
MAX_DIMS = 4  # GGML_MAX_DIMS
# Metadata value types: id -> struct format (8 is a string, 9 an array).
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
SCALARS.update({10: "<Q", 11: "<q", 12: "<d"})
STRING, ARRAY = 8, 9
VOCABULARY_KEY = "tokenizer.ggml.tokens"
SPECIAL_TOKEN_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}
# ggml tensor types: id -> (elements per block, bytes per block), as gguf.GGML_QUANT_SIZES.
GGML_TYPES = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
}
# general.architecture -> the transformers class its GGUF loader builds (causal LMs only; the
# names must be on submissions.architectures' allow-list, tests/submissions/test_gguf.py checks).
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen2moe": "Qwen2MoeForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "qwen3moe": "Qwen3MoeForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "starcoder2": "Starcoder2ForCausalLM",
    "stablelm": "StableLmForCausalLM",
    "falcon": "FalconForCausalLM",
    "bloom": "BloomForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "nemotron": "NemotronForCausalLM",
}


class GGUFError(ValueError):
    """A malformed or unsupported GGUF file; ``field`` names the part of the header at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    size: int  # bytes in the data section


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]  # arrays: {"type": item type, "length": n}, but the vocabulary
    tensors: tuple[Tensor, ...]
    data_start: int

    @property
    def architecture(self) -> str:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else ""

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def special_tokens(self) -> dict[str, str]:
        """``bos_token``... as the strings transformers' GGUF tokenizer passes to a template."""
        vocabulary = self.metadata.get(VOCABULARY_KEY)
        tokens = {}
        for name, key in SPECIAL_TOKEN_KEYS.items():
            index = self.metadata.get(key)
            if (
                isinstance(vocabulary, list)
                and isinstance(index, int)
                and 0 <= index < len(vocabulary)
            ):
                tokens[name] = vocabulary[index]
        return tokens

    @property
    def parameters(self) -> int:
        return sum(math.prod(tensor.shape) for tensor in self.tensors)


def is_gguf(path: Path) -> bool:
    """Whether the file starts with the GGUF magic (the upload's format, whatever its name)."""
    with path.open("rb") as handle:
        return handle.read(4) == MAGIC


class _Reader:
    """Reads the header, refusing any read past the file's end or the header budget."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle, self.size, self.position, self.strings = handle, size, 0, 0

    def read(self, count: int, field: str) -> bytes:
        if count > self.size - self.position:
            raise GGUFError(field, f"needs {count} bytes at offset {self.position}; file truncated")
        if self.position + count > MAX_HEADER_BYTES:
            raise GGUFError(field, f"the header is larger than {MAX_HEADER_BYTES} bytes")
        data = self.handle.read(count)
        if len(data) != count:
            raise GGUFError(field, "file truncated")
        self.position += count
        return data

    def skip(self, count: int, field: str) -> None:
        if count > self.size - self.position or self.position + count > MAX_HEADER_BYTES:
            raise GGUFError(field, f"{count} bytes at offset {self.position} overrun the header")
        self.handle.seek(count, 1)
        self.position += count

    def unpack(self, fmt: str, field: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt), field))[0]

    def count(self, field: str, limit: int) -> int:
        value = int(self.unpack("<Q", field))
        if value > limit:
            raise GGUFError(field, f"{value} exceeds the limit of {limit}")
        return value

    def string(self, field: str, limit: int = MAX_STRING_BYTES) -> str:
        self.strings += 1
        if self.strings > MAX_STRINGS:
            raise GGUFError(field, f"the header holds more than {MAX_STRINGS} strings")
        length = self.count(f"{field} length", limit)
        try:
            return self.read(length, field).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(field, "is not UTF-8") from None


def read_header(path: Path) -> GGUFHeader:
    """Parse and check a GGUF header (no tensor data is read).

    Raises:
        GGUFError: The first malformed or unsupported field, named in ``field``.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        reader = _Reader(handle, size)
        if reader.read(4, "magic") != MAGIC:
            raise GGUFError("magic", "not a GGUF file (the file does not start with 'GGUF')")
        version = int(reader.unpack("<I", "version"))
        if version not in VERSIONS:
            raise GGUFError("version", f"{version} is not supported (only {VERSIONS})")
        tensor_count = reader.count("tensor_count", MAX_TENSORS)
        metadata_count = reader.count("metadata_kv_count", MAX_METADATA)
        metadata = _read_metadata(reader, metadata_count)
        alignment = _alignment(metadata)
        infos = [_read_tensor_info(reader, index) for index in range(tensor_count)]
    data_start = -(-reader.position // alignment) * alignment
    tensors = _check_tensors(infos, alignment, size - data_start)
    return GGUFHeader(version, metadata, tensors, data_start)


def _read_metadata(reader: _Reader, count: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for index in range(count):
        key = reader.string(f"metadata[{index}] key", MAX_KEY_BYTES)
        if key in metadata:
            raise GGUFError(f"metadata {key!r}", "appears twice")
        value_type = int(reader.unpack("<I", f"metadata {key!r} type"))
        metadata[key] = _read_value(reader, value_type, f"metadata {key!r}")
    return metadata


def _read_value(reader: _Reader, value_type: int, field: str) -> Any:
    if value_type in SCALARS:
        return reader.unpack(SCALARS[value_type], field)
    if value_type == STRING:
        return reader.string(field)
    if value_type != ARRAY:
        raise GGUFError(f"{field} type", f"unknown value type {value_type}")
    item_type = int(reader.unpack("<I", f"{field} item type"))
    length = reader.count(f"{field} array length", MAX_ARRAY_ITEMS)
    if item_type in SCALARS:
        reader.skip(length * struct.calcsize(SCALARS[item_type]), field)
    elif item_type == STRING:  # each string checked; only the vocabulary is kept
        keep = field == f"metadata {VOCABULARY_KEY!r}"
        strings = []
        for index in range(length):
            text = reader.string(f"{field}[{index}]")
            if keep:
                strings.append(text)
        if keep:
            return strings
    elif item_type == ARRAY:
        raise GGUFError(f"{field} item type", "nested arrays are not supported")
    else:
        raise GGUFError(f"{field} item type", f"unknown value type {item_type}")
    return {"type": item_type, "length": length}


def _alignment(metadata: dict[str, Any]) -> int:
    value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value & (value - 1):
        raise GGUFError("metadata 'general.alignment'", f"{value!r} is not a power of two")
    return value


def _read_tensor_info(reader: _Reader, index: int) -> tuple[str, tuple[int, ...], int, int]:
    name = reader.string(f"tensor[{index}] name", MAX_NAME_BYTES)
    field = f"tensor {name!r}"
    dims = int(reader.unpack("<I", f"{field} n_dims"))
    if not 1 <= dims <= MAX_DIMS:
        raise GGUFError(f"{field} n_dims", f"{dims} is not between 1 and {MAX_DIMS}")
    shape = tuple(int(reader.unpack("<Q", f"{field} dims")) for _ in range(dims))
    ggml_type = int(reader.unpack("<I", f"{field} type"))
    offset = int(reader.unpack("<Q", f"{field} offset"))
    return name, shape, ggml_type, offset


def _check_tensors(
    infos: list[tuple[str, tuple[int, ...], int, int]], alignment: int, data_bytes: int
) -> tuple[Tensor, ...]:
    tensors, names = [], set()
    for name, shape, ggml_type, offset in infos:
        field = f"tensor {name!r}"
        if name in names:
            raise GGUFError(field, "appears twice")
        names.add(name)
        if ggml_type not in GGML_TYPES:
            raise GGUFError(f"{field} type", f"unknown ggml type {ggml_type}")
        block, block_bytes = GGML_TYPES[ggml_type]
        if any(dim == 0 for dim in shape) or shape[0] % block:
            raise GGUFError(f"{field} dims", f"{list(shape)} do not fit blocks of {block}")
        size = math.prod(shape) // block * block_bytes
        if offset % alignment or offset + size > data_bytes:
            raise GGUFError(
                f"{field} offset", f"{offset} (+{size} bytes) is unaligned or past the file's end"
            )
        tensors.append(Tensor(name, shape, ggml_type, offset, size))
    ordered = sorted(tensors, key=lambda tensor: tensor.offset)
    for first, second in zip(ordered, ordered[1:]):
        if second.offset < first.offset + first.size:
            raise GGUFError(f"tensor {second.name!r} offset", f"overlaps {first.name!r}")
    return tuple(tensors)


def hf_architecture(header: GGUFHeader) -> str:
    """The transformers class the worker will convert this file to.

    Raises:
        GGUFError: ``general.architecture`` is missing or not one the worker converts.
    """
    field = "metadata 'general.architecture'"
    if not header.architecture:
        raise GGUFError(field, "is missing or not a string")
    if header.architecture not in ARCHITECTURES:
        raise GGUFError(
            field, f"{header.architecture!r} is not one of {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[header.architecture]


def convert_gguf(source: Path, target: Path) -> Path:
    """Worker side: ``models_zoo.gguf.convert`` (transformers dequantizes to bfloat16 safetensors).

    The conversion is marked finished only at its end, so a retry after a worker died mid-way
    converts again rather than trusting a half-written folder.
    """
    from models_zoo.gguf import convert

    return convert(source, target, name=source.parent.name)
