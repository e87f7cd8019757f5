"""The chat serving options: dtype and arena temperature, validated and handed on."""

from __future__ import annotations

import pytest

from contestants.options import ServingOptions, ServingOptionsError


def test_dtype_and_temperature_round_trip_and_reach_the_loader() -> None:
    options = ServingOptions.from_dict({"device": "cpu", "dtype": "bfloat16", "temperature": 1.0})
    assert options.to_dict() == {
        "device": "cpu",
        "quantize_int8": False,
        "max_memory": None,
        "dtype": "bfloat16",
        "temperature": 1.0,
    }
    assert options.load_arguments()["dtype"] == "bfloat16"
    assert "temperature" not in options.load_arguments()  # the arena uses it, not the loader
    assert ServingOptions.from_dict(options.to_dict()) == options
    worker = options.with_worker_defaults(device="cuda", quantize_int8=True)
    assert (worker.dtype, worker.temperature) == ("bfloat16", 1.0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"dtype": "int4"}, "serving.dtype"),
        ({"temperature": -0.1}, "serving.temperature"),
        ({"temperature": "hot"}, "serving.temperature"),
        ({"temperature": True}, "serving.temperature"),
        ({"temperature": 9}, "serving.temperature"),
    ],
)
def test_bad_chat_options_name_the_option(data: dict[str, object], field: str) -> None:
    with pytest.raises(ServingOptionsError) as raised:
        ServingOptions.from_dict(data)
    assert raised.value.field == field
