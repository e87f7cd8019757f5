"""Listing rules: minimum votes (hidden or preliminary), deprecated models, first vote only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evalcore.errors import InvalidParameterError
from evalcore.ratings import CSV_COLUMNS, PairCounts, RatingParams, compute_ratings, rate_battles
from tests.evalcore.ratings.synthetic import model_names, simulate


@pytest.fixture
def counts() -> PairCounts:
    a, b, outcome = simulate(np.linspace(-1, 1, 5), 2_000, seed=0)
    keep = ~((a == 4) | (b == 4)) | (np.arange(a.size) % 10 == 0)  # model-04: few votes
    return PairCounts.from_codes(model_names(5), a[keep], b[keep], outcome[keep])


def test_preliminary_models_are_ranked_and_marked_instead_of_hidden(counts):
    votes = dict(zip(counts.models, counts.votes_per_model().tolist(), strict=True))
    threshold = votes["model-04"] + 1
    hidden = compute_ratings(counts, RatingParams(min_votes=threshold, bootstrap_rounds=0))
    marked = compute_ratings(
        counts,
        RatingParams(min_votes=threshold, below_min_votes_policy="preliminary", bootstrap_rounds=0),
    )
    assert hidden.below_min_votes == ("model-04",)
    assert [r.model for r in hidden.rows] == [r.model for r in marked.rows if not r.preliminary]
    assert marked.below_min_votes == ()
    assert [r.model for r in marked.rows if r.preliminary] == ["model-04"]
    assert marked.row_for("model-04").rating == hidden_fit_rating(counts, "model-04")
    lines = marked.to_csv().splitlines()
    assert lines[0].split(",") == [*CSV_COLUMNS, "interval", "preliminary"]
    assert sum(line.endswith(",true") for line in lines) == 1
    # Parameters older releases could record keep the original eight columns.
    assert hidden.to_csv().splitlines()[0].split(",") == list(CSV_COLUMNS)


def hidden_fit_rating(counts: PairCounts, model: str) -> float:
    return compute_ratings(counts, RatingParams(bootstrap_rounds=0)).row_for(model).rating


def test_deprecated_models_stay_in_the_fit_but_leave_the_table(counts):
    plain = compute_ratings(counts, RatingParams(bootstrap_rounds=0))
    params = RatingParams(deprecated=("model-02",), bootstrap_rounds=0)
    result = compute_ratings(counts, params)
    assert result.deprecated == ("model-02",)
    assert "model-02" not in [r.model for r in result.rows]
    assert "model-02" not in result.matrices.models
    for row in result.rows:  # same fit: identical ratings for everybody else
        assert row.rating == plain.row_for(row.model).rating
    assert [r.rank for r in result.rows] == list(range(1, 5))
    document = json.loads(result.to_json())
    assert document["deprecated"] == ["model-02"]
    assert document["params"]["deprecated"] == ["model-02"]
    assert RatingParams.from_dict(document["params"]) == params


def test_deprecated_names_must_be_a_list_of_strings():
    with pytest.raises(InvalidParameterError) as error:
        RatingParams(deprecated="model-02")  # type: ignore[arg-type]
    assert "deprecated" in error.value.fields


def test_first_vote_per_conversation_keeps_only_the_first_vote_of_each(battles):
    for i, battle in enumerate(battles):
        battle["conversation_id"] = f"c{i // 3}" if i < 6 else None
    params = RatingParams(ridge=0.1, bootstrap_rounds=0)
    first_only = rate_battles(
        battles,
        RatingParams(**{**params.to_dict(), "anchor": None, "first_vote_per_conversation": True}),
    )
    expected = rate_battles([b for i, b in enumerate(battles) if i in (0, 3, 6, 7, 8)], params)
    assert [(r.model, r.rating, r.votes) for r in first_only.rows] == [
        (r.model, r.rating, r.votes) for r in expected.rows
    ]
    assert first_only.params.first_vote_per_conversation
