"""Locating and reading the FewGLUE task files."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalcore.fewshot.registry import Doc, TaskSpec

DATA_DIR_ENV = "LADDER_FEWGLUE_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
# The shared checkout sits beside the repository (../shared/data/fewglue).
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "fewglue"
POOL_FILES = ("train.jsonl", "dev32.jsonl")  # the 64-example labeled pool of FewNLU
TEST_FILE = "val.jsonl"  # the SuperGLUE validation set, used as test set by FewNLU


@dataclass(frozen=True)
class TaskData:
    """The records of one task.

    Attributes:
        pool: Labeled pool records (train + dev32), split by Multi-Splits.
        test: Test records (``val.jsonl``), possibly limited.
        digests: File name -> sha256 of every file read.
        test_size: Number of test records before ``limit``.
    """

    pool: list[dict[str, Any]]
    test: list[dict[str, Any]]
    digests: dict[str, str]
    test_size: int


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The FewGLUE directory: the argument, else ``$LADDER_FEWGLUE_DIR``, else the default.

    Raises:
        FileNotFoundError: If the chosen directory does not exist.
    """
    if data_dir is not None:
        chosen, source = Path(data_dir), "--data-dir"
    elif os.environ.get(DATA_DIR_ENV):
        chosen, source = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        chosen, source = DEFAULT_DATA_DIR, "the default"
    if not chosen.is_dir():
        raise FileNotFoundError(
            f"FewGLUE data directory {str(chosen)!r} (from {source}) does not exist; pass "
            f"--data-dir or set {DATA_DIR_ENV} to the folder holding BoolQ/, CB/, RTE/ ..."
        )
    return chosen


def task_available(spec: TaskSpec, data_dir: Path) -> bool:
    """Whether all files the protocol needs for ``spec`` exist under ``data_dir``."""
    folder = data_dir / spec.directory
    return all((folder / name).is_file() for name in (*POOL_FILES, TEST_FILE))


def load_task_data(spec: TaskSpec, data_dir: Path, limit: int | None = None) -> TaskData:
    """Read the pool and test records of ``spec``.

    Args:
        spec: The task.
        data_dir: The FewGLUE directory.
        limit: Keep only the first ``limit`` test records (for smoke runs).

    Raises:
        FileNotFoundError: If a needed file is missing (ReCoRD has no ``val.jsonl`` here).
        ValueError: If ``limit`` is not positive or a line is not a JSON object.
    """
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be a positive number of examples, got {limit}")
    folder = data_dir / spec.directory
    digests: dict[str, str] = {}
    pool: list[dict[str, Any]] = []
    for name in POOL_FILES:
        pool.extend(_read_jsonl(folder / name, digests))
    test = _read_jsonl(folder / TEST_FILE, digests)
    size = len(test)
    return TaskData(pool, test[:limit] if limit else test, digests, size)


def records_to_docs(spec: TaskSpec, records: list[dict[str, Any]]) -> list[Doc]:
    """Flatten records into docs; ``Doc.record`` is the index in ``records``."""
    return [doc for index, record in enumerate(records) for doc in spec.to_docs(record, index)]


def _read_jsonl(path: Path, digests: dict[str, str]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"missing task file {str(path)!r}")
    raw = path.read_bytes()
    digests[path.name] = hashlib.sha256(raw).hexdigest()
    records = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}:{number}: expected a JSON object, got {type(record).__name__}"
            )
        records.append(record)
    return records
