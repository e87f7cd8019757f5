"""Serving options of a contestant: one typed, validated value handed to the model loader.

Stored as JSON on ``Contestant.serving``; ``ServingOptions.from_dict`` is the only parser, used by
the model field's validator (admin, ``full_clean``), the migrations and the worker, so a value
that reaches ``models_zoo.serving.load`` has passed the same checks everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")
# The sizes models_zoo.offload.parse_size accepts (that module imports torch, the web must not).
SIZE_PATTERN = re.compile(r"^\s*[0-9]*\.?[0-9]+\s*([kKmMgGtT]i?[bB]|[bB])?\s*$")
FIELDS = ("device", "quantize_int8", "max_memory", "dtype", "temperature")
DTYPES = ("float32", "bfloat16", "float16")


class ServingOptionsError(ValueError):
    """A malformed serving option; ``field`` names it (``serving.device``, …)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class ServingOptions:
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"
    quantize_int8: bool = False
    # None, bytes, or a per-device budget like {"cuda": "2GiB"} (layers beyond it are offloaded).
    max_memory: int | dict[str, int | str] | None = field(default=None, hash=False)
    dtype: str | None = None  # None: bfloat16 on CUDA, float32 on CPU (models_zoo.serving)
    temperature: float | None = None  # arena sampling temperature; None: ARENA_TEMPERATURE

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device):
            raise ServingOptionsError(
                "serving.device", f"must be auto, cpu, cuda or cuda:N; got {self.device!r}"
            )
        if not isinstance(self.quantize_int8, bool):
            raise ServingOptionsError(
                "serving.quantize_int8", f"must be true or false; got {self.quantize_int8!r}"
            )
        _check_max_memory(self.max_memory)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ServingOptionsError(
                "serving.dtype", f"must be null or one of {', '.join(DTYPES)}; got {self.dtype!r}"
            )
        temperature = self.temperature
        if temperature is not None and (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not 0 <= temperature <= 5
        ):
            raise ServingOptionsError(
                "serving.temperature", f"must be null or a number from 0 to 5; got {temperature!r}"
            )

    @classmethod
    def from_dict(cls, data: Any, *, prefix: str = "serving") -> ServingOptions:
        """Parse the stored JSON object; ``{}`` gives the defaults.

        Raises:
            ServingOptionsError: naming the offending field.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ServingOptionsError(prefix, f"must be an object; got {type(data).__name__}")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ServingOptionsError(
                f"{prefix}.{unknown[0]}", f"unknown option (known: {', '.join(FIELDS)})"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "quantize_int8": self.quantize_int8,
            "max_memory": self.max_memory,
            # Written only when set, so options stored before they existed read the same.
            **{name: value for name, value in self._chat_options().items() if value is not None},
        }

    def _chat_options(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "temperature": self.temperature}

    def with_worker_defaults(self, *, device: str, quantize_int8: bool) -> ServingOptions:
        """The options a worker uses: its device when "auto", int8 when either asks for it."""
        return ServingOptions(
            device=device if self.device == "auto" else self.device,
            quantize_int8=self.quantize_int8 or quantize_int8,
            max_memory=self.max_memory,
            dtype=self.dtype,
            temperature=self.temperature,
        )

    def load_arguments(self) -> dict[str, Any]:
        """Keyword arguments for ``models_zoo.serving.load``."""
        return {
            "device": self.device,
            "quantize": "int8" if self.quantize_int8 else None,
            "max_memory": self.max_memory or None,
            **({"dtype": self.dtype} if self.dtype is not None else {}),
        }


def _check_max_memory(value: object) -> None:
    name = "serving.max_memory"
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | dict):
        example = '{"cuda": "2GiB"}'
        raise ServingOptionsError(name, f"must be null, bytes or e.g. {example}; got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ServingOptionsError(name, f"must be non-negative; got {value}")
        return
    if not value:
        raise ServingOptionsError(name, "must name at least one device")
    for device, size in value.items():
        if not isinstance(device, str) or not device:
            raise ServingOptionsError(name, f"device names must be non-empty; got {device!r}")
        is_bytes = isinstance(size, int) and not isinstance(size, bool) and size >= 0
        is_size = isinstance(size, str) and SIZE_PATTERN.match(size) is not None
        if not (is_bytes or is_size):
            raise ServingOptionsError(
                f"{name}.{device}", f"must be bytes or a size like '2GiB'; got {size!r}"
            )


def validate_serving(value: Any) -> None:
    """Model-field validator: a ``ValidationError`` naming the option."""
    try:
        ServingOptions.from_dict(value)
    except ServingOptionsError as error:
        raise ValidationError(str(error), code="invalid_serving") from None


def default_serving() -> dict[str, Any]:
    return ServingOptions().to_dict()
