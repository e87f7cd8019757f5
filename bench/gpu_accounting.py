"""GPU check of the evaluation accounting: NVML energy, GPU-seconds, cost and CO2e of a GPU job.

    python bench/gpu_accounting.py       # needs CUDA and pynvml (nvidia-ml-py)

Meters a fixed bf16 matrix-product workload with ``submissions.accounting.Meter`` (pure Python,
no Django) and prints the usage it records, so the NVML path of the pipeline's accounting has run
on a real GPU, not only against a faked counter in the unit tests.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from submissions.accounting import Meter, Prices, co2e_g, cost_usd  # noqa: E402

PRICES = Prices(
    cpu_power_w=65.0,
    gpu_power_w=300.0,
    price_cpu_hour_usd=0.05,
    price_gpu_hour_usd=2.0,
    grid_g_per_kwh=400.0,
    pue=1.2,
)


def main() -> int:
    if not torch.cuda.is_available():
        print("needs CUDA", file=sys.stderr)
        return 2
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    (a @ b).sum().item()  # warm-up
    meter = Meter(PRICES).start()
    started = time.perf_counter()
    products = 0
    while time.perf_counter() - started < 10.0:
        for _ in range(50):
            a @ b
        torch.cuda.synchronize()
        products += 50
    usage = meter.stop(uses_gpu=True)
    tflops = 2 * 8192**3 * products / usage.wall_time_s / 1e12
    rows = [
        ("device", torch.cuda.get_device_name()),
        ("workload", f"{products} bf16 8192^3 products, {tflops:.0f} TFLOP/s"),
        ("wall time (s)", f"{usage.wall_time_s:.2f}"),
        ("GPU-seconds", f"{usage.gpu_seconds:.2f}"),
        ("energy source", usage.energy_source),
        ("energy (Wh)", f"{usage.energy_kwh * 1000:.3f}"),
        ("mean power (W)", f"{usage.energy_kwh * 3.6e6 / usage.wall_time_s:.0f}"),
        ("cost (USD)", f"{cost_usd(usage, PRICES):.5f}"),
        ("CO2e (g)", f"{co2e_g(usage.energy_kwh, PRICES):.3f}"),
    ]
    print("| metric | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0 if usage.energy_source == "nvml" else 1


if __name__ == "__main__":
    raise SystemExit(main())
