"""Serving options: one parser, errors that name the option, what the worker hands the loader."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from contestants.models import Contestant
from contestants.options import ServingOptions, ServingOptionsError


def test_empty_serving_options_are_the_defaults() -> None:
    assert ServingOptions.from_dict({}) == ServingOptions("auto", False, None)
    assert ServingOptions.from_dict(None).to_dict() == {
        "device": "auto",
        "quantize_int8": False,
        "max_memory": None,
    }


def test_serving_options_round_trip_through_their_stored_form() -> None:
    options = ServingOptions(device="cuda:1", quantize_int8=True, max_memory={"cuda": "2GiB"})
    assert ServingOptions.from_dict(options.to_dict()) == options


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"device": "gpu"}, "serving.device"),
        ({"device": 0}, "serving.device"),
        ({"quantize_int8": "yes"}, "serving.quantize_int8"),
        ({"max_memory": "2GiB"}, "serving.max_memory"),
        ({"max_memory": -1}, "serving.max_memory"),
        ({"max_memory": {}}, "serving.max_memory"),
        ({"max_memory": {"cuda": "two gigs"}}, "serving.max_memory.cuda"),
        ({"max_memory": {"cuda": True}}, "serving.max_memory.cuda"),
        ({"dtype": "bf16"}, "serving.dtype"),
        (["cpu"], "serving"),
    ],
)
def test_malformed_serving_option_is_refused_naming_the_field(data: Any, field: str) -> None:
    with pytest.raises(ServingOptionsError) as caught:
        ServingOptions.from_dict(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.django_db
def test_model_validation_refuses_a_bad_device_naming_the_field() -> None:
    contestant = Contestant(name="m", checkpoint_path="/x", serving={"device": "tpu"})
    with pytest.raises(ValidationError) as caught:
        contestant.full_clean()
    assert "serving" in caught.value.message_dict
    assert "serving.device" in caught.value.message_dict["serving"][0]


@pytest.mark.django_db
def test_new_contestant_gets_the_default_serving_options() -> None:
    contestant = Contestant.objects.create(name="m", checkpoint_path="/x")
    contestant.full_clean()
    assert contestant.serving_options == ServingOptions()


def test_worker_device_fills_in_auto_only() -> None:
    auto = ServingOptions().with_worker_defaults(device="cpu", quantize_int8=False)
    pinned = ServingOptions(device="cuda").with_worker_defaults(device="cpu", quantize_int8=False)
    assert (auto.device, pinned.device) == ("cpu", "cuda")


def test_worker_int8_applies_when_either_side_asks_for_it() -> None:
    assert ServingOptions().with_worker_defaults(device="auto", quantize_int8=True).quantize_int8
    assert (
        ServingOptions(quantize_int8=True)
        .with_worker_defaults(device="auto", quantize_int8=False)
        .quantize_int8
    )


def test_load_arguments_are_what_models_zoo_serving_load_takes() -> None:
    import inspect

    options = ServingOptions(device="cpu", quantize_int8=True, max_memory={"cpu": 10_000})
    arguments = options.load_arguments()
    assert arguments == {"device": "cpu", "quantize": "int8", "max_memory": {"cpu": 10_000}}
    from models_zoo import serving

    assert set(arguments) <= set(inspect.signature(serving.load).parameters)
