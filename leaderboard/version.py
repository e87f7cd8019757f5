"""The code version recorded in each release: settings, else the git commit, else "unknown"."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def code_version() -> str:
    configured = settings.LADDER_CODE_VERSION
    if configured:
        return str(configured)[:100]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"git:{commit}" if commit else "unknown"
