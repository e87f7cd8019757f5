"""GPU kernels for the model zoo (Triton, imported lazily; every module imports without it)."""

from __future__ import annotations
