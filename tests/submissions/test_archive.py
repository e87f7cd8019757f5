"""Archive checks: every unsafe member is refused with its own code before anything is loaded."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from submissions.archive import Limits, extract_archive
from submissions.exceptions import SubmissionError
from tests.submissions.conftest import tar_directory, tar_with, zip_directory

LIMITS = Limits(max_files=64, max_unpacked_bytes=10_000_000, max_compression_ratio=20.0)


def refused(archive: Path, tmp_path: Path, limits: Limits = LIMITS) -> str:
    destination = tmp_path / "out"
    with pytest.raises(SubmissionError) as caught:
        extract_archive(archive, destination, limits)
    assert not destination.exists()  # nothing is left behind
    return caught.value.code


def file_member(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def test_valid_tar_gz_and_zip_unpack_to_the_checkpoint_files(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    extract_archive(tar_directory(tiny_checkpoint, tmp_path / "a.tar.gz"), tmp_path / "t", LIMITS)
    extract_archive(zip_directory(tiny_checkpoint, tmp_path / "a.zip"), tmp_path / "z", LIMITS)
    assert (tmp_path / "t/model/model.safetensors").read_bytes() == (
        tiny_checkpoint / "model.safetensors"
    ).read_bytes()
    assert (tmp_path / "z/config.json").is_file()


@pytest.mark.parametrize("name", ["../evil.json", "model/../../evil.json", "/etc/evil.json"])
def test_path_traversal_and_absolute_paths_are_unsafe_path(tmp_path: Path, name: str) -> None:
    archive = tar_with(tmp_path / "a.tar.gz", [(file_member(name), b"{}")])
    assert refused(archive, tmp_path) == "unsafe_path"


def test_zip_traversal_is_unsafe_path(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("../../evil.json", "{}")
    assert refused(tmp_path / "a.zip", tmp_path) == "unsafe_path"


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_symlinks_and_hard_links_are_archive_link(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("config.json")
    link.type, link.linkname = kind, "/etc/passwd"
    assert refused(tar_with(tmp_path / "a.tar.gz", [(link, None)]), tmp_path) == "archive_link"


def test_zip_symlink_is_archive_link(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("config.json")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr(info, "/etc/passwd")
    assert refused(tmp_path / "a.zip", tmp_path) == "archive_link"


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_files_and_fifos_are_archive_special_file(tmp_path: Path, kind: bytes) -> None:
    device = tarfile.TarInfo("dev")
    device.type = kind
    archive = tar_with(tmp_path / "a.tar.gz", [(device, None)])
    assert refused(archive, tmp_path) == "archive_special_file"


def test_more_files_than_the_limit_is_archive_too_many_files(tmp_path: Path) -> None:
    members = [(file_member(f"f{i}.json"), b"{}") for i in range(5)]
    limits = Limits(max_files=4, max_unpacked_bytes=10**6, max_compression_ratio=1000)
    assert refused(tar_with(tmp_path / "a.tar.gz", members), tmp_path, limits) == (
        "archive_too_many_files"
    )


def test_more_unpacked_bytes_than_the_limit_is_archive_too_large(tmp_path: Path) -> None:
    members = [(file_member("big.json"), bytes(range(256)) * 40)]
    limits = Limits(max_files=4, max_unpacked_bytes=5000, max_compression_ratio=1000)
    assert refused(tar_with(tmp_path / "a.tar.gz", members), tmp_path, limits) == (
        "archive_too_large"
    )


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_highly_compressed_payload_is_archive_compression_ratio(tmp_path: Path, fmt: str) -> None:
    zeros = bytes(2_000_000)
    if fmt == "tar":
        archive = tar_with(tmp_path / "a.tar.gz", [(file_member("zeros.json"), zeros)])
    else:
        archive = tmp_path / "a.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
            handle.writestr("zeros.json", zeros)
    assert refused(archive, tmp_path) == "archive_compression_ratio"


@pytest.mark.parametrize(
    "name", ["pytorch_model.bin", "model.pt", "weights.pkl", "model/optimizer.pth"]
)
def test_pickle_based_weights_are_unsafe_weights(tmp_path: Path, name: str) -> None:
    archive = tar_with(tmp_path / "a.tar.gz", [(file_member(name), b"\x80\x04K\x01.")])
    assert refused(archive, tmp_path) == "unsafe_weights"


@pytest.mark.parametrize("payload", [b"", b"not an archive at all", b"PK\x03\x04garbage"])
def test_garbage_is_unsupported_archive(tmp_path: Path, payload: bytes) -> None:
    (tmp_path / "a.tar.gz").write_bytes(payload)
    assert refused(tmp_path / "a.tar.gz", tmp_path) == "unsupported_archive"


def test_duplicate_member_names_are_refused(tmp_path: Path) -> None:
    members = [(file_member("config.json"), b"{}"), (file_member("config.json"), b"[]")]
    assert refused(tar_with(tmp_path / "a.tar.gz", members), tmp_path) == "unsupported_archive"


def test_truncated_gzip_is_unsupported_archive(tiny_checkpoint: Path, tmp_path: Path) -> None:
    whole = tar_directory(tiny_checkpoint, tmp_path / "a.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    assert refused(tmp_path / "cut.tar.gz", tmp_path) == "unsupported_archive"


def test_listing_is_refused_before_a_bomb_member_is_decompressed(tmp_path: Path) -> None:
    # A header that claims 10 GB: refused from the listing alone, without reading the data.
    info = tarfile.TarInfo("huge.safetensors")
    info.size = 10 * 1024**3
    buffer = io.BytesIO()
    buffer.write(info.tobuf())
    (tmp_path / "a.tar").write_bytes(buffer.getvalue() + bytes(1024))
    assert refused(tmp_path / "a.tar", tmp_path) in ("archive_too_large", "unsupported_archive")
