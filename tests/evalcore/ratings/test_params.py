from __future__ import annotations

import pytest

from evalcore.errors import InvalidParameterError
from evalcore.ratings import RatingParams, parse_anchor


def test_defaults_match_the_public_arena():
    params = RatingParams()
    assert (params.method, params.bootstrap_rounds, params.seed, params.ties) == (
        "bt",
        1000,
        0,
        "half",
    )
    assert (params.k, params.scale, params.base, params.init) == (4.0, 400.0, 10.0, 1000.0)
    assert params.anchor is None and params.ridge == 0.0 and params.confidence == 0.95


def test_to_dict_round_trips_and_is_json_ready():
    params = RatingParams(
        method="davidson", bootstrap_rounds=10, seed=3, anchor=("m", 1114), min_votes=300
    )
    data = params.to_dict()
    assert data["anchor"] == {"model": "m", "rating": 1114.0}
    assert RatingParams.from_dict(data) == params
    # A recorded set without a sampler version predates the versions: it used version 1.
    assert RatingParams.from_dict({}) == RatingParams(bootstrap_sampler=1)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"method": "glicko"}, "method"),
        ({"ties": "ignore"}, "ties"),
        ({"bootstrap_rounds": -1}, "bootstrap_rounds"),
        ({"bootstrap_rounds": 2.5}, "bootstrap_rounds"),
        ({"seed": -3}, "seed"),
        ({"min_votes": True}, "min_votes"),
        ({"ridge": -0.1}, "ridge"),
        ({"confidence": 1.0}, "confidence"),
        ({"k": 0}, "k"),
        ({"base": 1}, "base"),
        ({"scale": float("nan")}, "scale"),
        ({"anchor": ("m",)}, "anchor"),
        ({"anchor": ("", 1000)}, "anchor"),
        ({"anchor": ("m", "high")}, "anchor"),
    ],
)
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(InvalidParameterError) as caught:
        RatingParams(**overrides)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"`{field}` ")
    assert caught.value.code == "invalid_parameter"


def test_unknown_key_is_rejected():
    with pytest.raises(InvalidParameterError, match="`colour` is not a rating parameter"):
        RatingParams.from_dict({"colour": "blue"})


def test_anchor_text_parses_and_allows_equals_in_the_name():
    assert parse_anchor("mixtral-8x7b-instruct-v0.1=1114") == ("mixtral-8x7b-instruct-v0.1", 1114.0)
    assert parse_anchor("a=b=1000.5") == ("a=b", 1000.5)
    for bad in ("1114", "=1114", "m=high"):
        with pytest.raises(InvalidParameterError):
            parse_anchor(bad)
