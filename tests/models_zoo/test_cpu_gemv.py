"""The CPU panel GEMV kernel against the plain float32 product, on random inputs."""

from __future__ import annotations

import pytest
import torch

from models_zoo.kernels import cpu_gemv

pytestmark = pytest.mark.skipif(not cpu_gemv.is_available(), reason="needs cc and AVX-512F")

# (out, in): multiples of the 64-column panel, a partial last panel, fewer columns than a panel
# and than one 16-lane register, and SmolLM2's shapes.
SHAPES = [(960, 576), (100, 37), (7, 5), (1, 300), (3072, 576), (576, 1536)]


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize(("out_features", "in_features"), SHAPES)
def test_matmul_equals_the_plain_product(rows: int, out_features: int, in_features: int) -> None:
    generator = torch.Generator().manual_seed(out_features * 31 + in_features + rows)
    weight = torch.randn(out_features, in_features, generator=generator)
    x = torch.randn(rows, in_features, generator=generator)
    panels = cpu_gemv.pack(weight)
    assert panels.shape == (-(-out_features // 64), in_features, 64)
    expected = x.double() @ weight.double().t()
    tolerance = 1e-5 * in_features**0.5 * (x.abs().max() * weight.abs().max()).item()
    torch.testing.assert_close(
        cpu_gemv.matmul(x, panels, out_features).double(), expected, rtol=0, atol=tolerance
    )
    residual = torch.randn(rows, out_features, generator=generator)
    out = residual.clone()
    assert cpu_gemv.matmul(x, panels, out_features, out=out) is out  # in place, +=
    torch.testing.assert_close(out.double(), residual.double() + expected, rtol=0, atol=tolerance)


def test_each_output_is_a_sequential_fma_sum_over_k() -> None:
    """Outputs are summed over k in order (bit-equal to an in-order float32 FMA loop)."""
    generator = torch.Generator().manual_seed(5)
    weight, x = torch.randn(70, 33, generator=generator), torch.randn(2, 33, generator=generator)
    got = cpu_gemv.matmul(x, cpu_gemv.pack(weight), 70)
    expected = torch.zeros(2, 70, dtype=torch.float32)
    for k in range(33):  # fp64 product then one rounding = one fp32 FMA
        expected = (expected.double() + x[:, k : k + 1].double() * weight[:, k].double()).float()
    assert torch.equal(got, expected)


def test_strided_rows_and_bad_operands() -> None:
    weight = torch.randn(64, 16)
    panels = cpu_gemv.pack(weight)
    wide = torch.randn(3, 40)
    x = wide[:, 8:24]  # rows with a stride of 40
    torch.testing.assert_close(cpu_gemv.matmul(x, panels, 64), x @ weight.t())
    with pytest.raises(ValueError, match="bad operands"):
        cpu_gemv.matmul(torch.randn(1, 15), panels, 64)
    with pytest.raises(ValueError, match="bad operands"):
        cpu_gemv.matmul(torch.randn(1, 16, dtype=torch.float64), panels, 64)
    with pytest.raises(ValueError, match="bad out"):
        cpu_gemv.matmul(torch.randn(1, 16), panels, 64, out=torch.zeros(1, 63))
    with pytest.raises(ValueError, match="2-D float32"):
        cpu_gemv.pack(weight.double())
