"""Typed access to the submission settings, each with its default.

Each value is read from Django settings first, then from the environment variable of the same
name (so a worker subprocess can be configured by environment before ``config/settings.py``
declares the setting), then the default below. A malformed environment value raises
``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MB = 1024 * 1024

DEFAULTS: dict[str, Any] = {
    # Uploads and archives.
    "LADDER_SUBMISSION_MAX_UPLOAD_BYTES": 2048 * MB,
    "LADDER_SUBMISSION_MAX_FILES": 64,
    "LADDER_SUBMISSION_MAX_UNPACKED_BYTES": 8192 * MB,
    "LADDER_SUBMISSION_MAX_COMPRESSION_RATIO": 20.0,
    "LADDER_SUBMISSIONS_PER_DAY": 10,
    # Where extracted checkpoints live; "" means VAR_DIR/submissions.
    "LADDER_SUBMISSION_ROOT": "",
    # Server-side checkpoint directories may be submitted only under these roots (comma
    # separated); empty disables submission by path.
    "LADDER_SUBMISSION_ALLOWED_ROOTS": "",
    # Pipeline.
    "LADDER_WORKER_DEVICE": "auto",
    "LADDER_WORKER_QUANTIZE_INT8": False,
    "LADDER_JOB_LEASE_S": 120,
    "LADDER_JOB_MAX_ATTEMPTS": 3,
    "LADDER_SUBMISSION_FEWSHOT_TASKS": "",  # comma separated; empty = all available tasks
    "LADDER_SUBMISSION_FEWSHOT_SPLITS": 4,
    "LADDER_SUBMISSION_FEWSHOT_LIMIT": 0,  # test records per task; 0 = all
    # Test hook: seconds the "load" step sleeps first (0 in production).
    "LADDER_SUBMISSION_STEP_DELAY_S": 0.0,
    # Accounting.
    "LADDER_CPU_POWER_W": 65.0,
    "LADDER_GPU_POWER_W": 300.0,
    "LADDER_PRICE_CPU_HOUR_USD": 0.05,
    "LADDER_PRICE_GPU_HOUR_USD": 2.0,
    "LADDER_GRID_INTENSITY_G_PER_KWH": 400.0,
    "LADDER_PUE": 1.2,
}


def get(name: str) -> Any:
    """The value of setting ``name``, coerced to the type of its default."""
    default = DEFAULTS[name]
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        return type(default)(raw)
    except ValueError:
        kind = type(default).__name__
        raise ImproperlyConfigured(f"{name} must be a {kind}, got {raw!r}") from None


def get_list(name: str) -> list[str]:
    value = get(name)
    if isinstance(value, list | tuple):
        return [str(item) for item in value if str(item)]
    return [item.strip() for item in str(value).split(",") if item.strip()]


def submission_root() -> Path:
    configured = get("LADDER_SUBMISSION_ROOT")
    return Path(configured) if configured else Path(settings.VAR_DIR) / "submissions"


def allowed_roots() -> list[Path]:
    return [Path(root).resolve() for root in get_list("LADDER_SUBMISSION_ALLOWED_ROOTS")]
