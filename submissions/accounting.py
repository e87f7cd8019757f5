"""Measure what an evaluation used (time, CPU, GPU, energy) and price it (cost, CO2e).

Energy comes from NVML's cumulative energy counter when ``pynvml`` is importable and a GPU is
present, else from Intel RAPL's package counter when readable, else it is an estimate:
configured watts × wall time, labelled ``estimate``.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RAPL_ENERGY = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
RAPL_RANGE = Path("/sys/class/powercap/intel-rapl:0/max_energy_range_uj")
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Prices:
    cpu_power_w: float
    gpu_power_w: float
    price_cpu_hour_usd: float
    price_gpu_hour_usd: float
    grid_g_per_kwh: float
    pue: float


@dataclass(frozen=True)
class Usage:
    wall_time_s: float
    cpu_seconds: float
    gpu_seconds: float
    energy_kwh: float
    energy_source: str  # "nvml", "rapl" or "estimate"


def cost_usd(usage: Usage, prices: Prices) -> float:
    return (
        usage.cpu_seconds / 3600 * prices.price_cpu_hour_usd
        + usage.gpu_seconds / 3600 * prices.price_gpu_hour_usd
    )


def co2e_g(energy_kwh: float, prices: Prices) -> float:
    """Grid emissions of the facility energy: IT energy × PUE × grid intensity."""
    return energy_kwh * prices.pue * prices.grid_g_per_kwh


def estimate_energy_kwh(wall_time_s: float, uses_gpu: bool, prices: Prices) -> float:
    watts = prices.cpu_power_w + (prices.gpu_power_w if uses_gpu else 0.0)
    return watts * wall_time_s / JOULES_PER_KWH


def _nvml_handles() -> tuple[Any, list[Any]] | None:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    except Exception:  # noqa: BLE001 - no driver or no GPU: fall back to the next source
        return None
    return (pynvml, handles) if handles else None


def _nvml_joules(nvml: tuple[Any, list[Any]]) -> float:
    module, handles = nvml
    return sum(module.nvmlDeviceGetTotalEnergyConsumption(h) for h in handles) / 1000.0


def _rapl_microjoules() -> int | None:
    try:
        return int(RAPL_ENERGY.read_text().strip())
    except (OSError, ValueError):
        return None


class Meter:
    """Measures one stretch of work: ``start()``, run, ``stop(uses_gpu=...)``."""

    def __init__(self, prices: Prices) -> None:
        self.prices = prices

    def start(self) -> Meter:
        self._wall = time.monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu = usage.ru_utime + usage.ru_stime
        self._nvml = _nvml_handles()
        self._nvml_start = _nvml_joules(self._nvml) if self._nvml else None
        self._rapl_start = _rapl_microjoules() if self._nvml is None else None
        return self

    def stop(self, *, uses_gpu: bool) -> Usage:
        wall = time.monotonic() - self._wall
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - self._cpu
        energy, source = self._measured_kwh()
        if energy is None:
            energy, source = estimate_energy_kwh(wall, uses_gpu, self.prices), "estimate"
        return Usage(wall, cpu, wall if uses_gpu else 0.0, energy, source)

    def _measured_kwh(self) -> tuple[float | None, str]:
        if self._nvml is not None and self._nvml_start is not None:
            return (_nvml_joules(self._nvml) - self._nvml_start) / JOULES_PER_KWH, "nvml"
        end = _rapl_microjoules()
        if self._rapl_start is None or end is None:
            return None, "estimate"
        delta = end - self._rapl_start
        if delta < 0:  # the counter wrapped around
            try:
                delta += int(RAPL_RANGE.read_text().strip())
            except (OSError, ValueError):
                return None, "estimate"
        return delta / 1e6 / JOULES_PER_KWH, "rapl"
