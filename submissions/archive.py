"""Safe unpacking of uploaded checkpoint archives (``.tar.gz``/``.tgz``/``.tar``/``.zip``).

Every member is checked from the archive's listing before a byte is written: no absolute
paths or ``..`` components, regular files and directories only (no symlinks, hard links or
device files), no pickle-based weight files, and limits on the number of files, the unpacked
bytes and the compression ratio (zip bombs). Extraction then writes each member itself,
counting the bytes actually written, so a listing that lies about sizes cannot exceed the limit.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from submissions.exceptions import SubmissionError

UNSAFE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_unpacked_bytes: int
    max_compression_ratio: float


@dataclass(frozen=True)
class Member:
    name: str  # normalised relative POSIX path
    size: int
    is_dir: bool


def check_member_name(raw: str) -> str:
    """The normalised relative path of an archive member, or ``unsafe_path``."""
    name = raw.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or path.is_absolute():
        raise SubmissionError("unsafe_path", f"archive member {raw!r} has an absolute path")
    if ".." in path.parts:
        raise SubmissionError("unsafe_path", f"archive member {raw!r} escapes the archive (..)")
    if "\x00" in name:
        raise SubmissionError("unsafe_path", f"archive member {raw!r} has a NUL byte in its name")
    parts = [part for part in path.parts if part not in ("", ".")]
    return "/".join(parts)


def check_weight_name(name: str) -> None:
    lowered = name.lower()
    if lowered.endswith(UNSAFE_WEIGHT_SUFFIXES) or lowered.endswith(".bin.index.json"):
        raise SubmissionError(
            "unsafe_weights",
            f"{name!r} is a pickle-based weight file; only *.safetensors weights are accepted "
            "(pickle can run code when loaded)",
        )


def _tar_members(archive: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, Member]]:
    for info in archive:
        name = check_member_name(info.name)
        if info.issym() or info.islnk():
            raise SubmissionError("archive_link", f"archive member {info.name!r} is a link")
        if not (info.isfile() or info.isdir()):
            raise SubmissionError(
                "archive_special_file", f"archive member {info.name!r} is not a regular file"
            )
        yield info, Member(name, info.size if info.isfile() else 0, info.isdir())


def _zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[zipfile.ZipInfo, Member]]:
    for info in archive.infolist():
        name = check_member_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise SubmissionError("archive_link", f"archive member {info.filename!r} is a link")
        kind = stat.S_IFMT(mode)  # 0 when the archiver recorded permissions only
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise SubmissionError(
                "archive_special_file", f"archive member {info.filename!r} is not a regular file"
            )
        yield info, Member(name, info.file_size, info.is_dir())


class _Budget:
    """Running totals checked against the limits as members are listed or written."""

    def __init__(self, limits: Limits, compressed_bytes: int) -> None:
        self.limits = limits
        self.compressed = max(compressed_bytes, 1)
        self.files = 0
        self.bytes = 0

    def add_file(self, name: str) -> None:
        check_weight_name(name)
        self.files += 1
        if self.files > self.limits.max_files:
            raise SubmissionError(
                "archive_too_many_files",
                f"the archive holds more than {self.limits.max_files} files",
            )

    def add_bytes(self, count: int) -> None:
        self.bytes += count
        if self.bytes > self.limits.max_unpacked_bytes:
            raise SubmissionError(
                "archive_too_large",
                f"the archive unpacks to more than {self.limits.max_unpacked_bytes} bytes",
            )
        ratio = self.bytes / self.compressed
        if ratio > self.limits.max_compression_ratio:
            raise SubmissionError(
                "archive_compression_ratio",
                f"the archive's compression ratio exceeds {self.limits.max_compression_ratio:g} "
                "(a possible zip bomb)",
            )


def _copy(source: IO[bytes], target: Path, budget: _Budget) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as out:
        while block := source.read(CHUNK):
            budget.add_bytes(len(block))
            out.write(block)


def extract_archive(archive_path: Path, destination: Path, limits: Limits) -> None:
    """Check ``archive_path`` and unpack it into the new directory ``destination``.

    Raises:
        SubmissionError: With the code of the first problem found; ``destination`` is removed.
    """
    destination.mkdir(parents=True)
    try:
        _extract(archive_path, destination, limits)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        shutil.rmtree(destination, ignore_errors=True)
        raise SubmissionError(
            "unsupported_archive", f"archive: the archive could not be read ({error})"
        ) from None
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def _extract(archive_path: Path, destination: Path, limits: Limits) -> None:
    compressed = archive_path.stat().st_size
    if zipfile.is_zipfile(archive_path):
        with zipfile.ZipFile(archive_path) as archive:
            members = list(_zip_members(archive))
            _check_listing([member for _, member in members], limits, compressed)
            budget = _Budget(limits, compressed)
            for info, member in members:
                if not member.is_dir:
                    with archive.open(info) as source:
                        _copy(source, destination / member.name, budget)
        return
    try:
        archive = tarfile.open(archive_path, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise SubmissionError(
            "unsupported_archive", f"archive: not a .tar.gz, .tar or .zip file ({error})"
        ) from None
    with archive:
        # Listing a compressed tar decompresses it; the listing is checked member by member so
        # that a bomb is refused at the first header past a limit, before its data is read.
        members = []
        listing = _Budget(limits, compressed)
        for info, member in _tar_members(archive):
            if not member.is_dir:
                listing.add_file(member.name)
                listing.add_bytes(member.size)
            members.append((info, member))
        budget = _Budget(limits, compressed)
        for info, member in members:
            if not member.is_dir:
                source = archive.extractfile(info)
                assert source is not None  # a regular file always has data
                _copy(source, destination / member.name, budget)


def _check_listing(members: list[Member], limits: Limits, compressed: int) -> None:
    budget = _Budget(limits, compressed)
    for member in members:
        if not member.is_dir:
            budget.add_file(member.name)
            budget.add_bytes(member.size)
