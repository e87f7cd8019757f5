"""Evaluation results are written to their own table, never to registry columns."""

from __future__ import annotations

import pytest

from contestants.models import Contestant, ContestantEvaluation
from contestants.services import record_evaluation


@pytest.fixture
def contestant(db: None) -> Contestant:
    return Contestant.objects.create(
        name="m", checkpoint_path="/x", organization="Org", status="active"
    )


def test_recording_results_keeps_the_ones_not_named(contestant: Contestant) -> None:
    record_evaluation(contestant_id=contestant.pk, fewshot_average=0.5, fewshot_std=0.01)
    record_evaluation(contestant_id=contestant.pk, eval_cost_usd=1.25)
    evaluation = ContestantEvaluation.objects.get(contestant=contestant)
    assert (evaluation.fewshot_average, evaluation.fewshot_std) == (0.5, 0.01)
    assert evaluation.eval_cost_usd == 1.25
    assert evaluation.eval_energy_kwh is None


def test_recording_results_leaves_the_registry_row_alone(contestant: Contestant) -> None:
    before = Contestant.objects.filter(pk=contestant.pk).values().get()
    record_evaluation(contestant_id=contestant.pk, fewshot_average=0.7)
    assert Contestant.objects.filter(pk=contestant.pk).values().get() == before


def test_recording_an_unknown_result_is_a_type_error(contestant: Contestant) -> None:
    with pytest.raises(TypeError, match="status"):
        record_evaluation(contestant_id=contestant.pk, status=1.0)
    assert not ContestantEvaluation.objects.exists()


def test_with_evaluation_gives_none_for_a_contestant_not_yet_evaluated(
    contestant: Contestant,
) -> None:
    other = Contestant.objects.create(name="n", checkpoint_path="/y")
    record_evaluation(contestant_id=other.pk, fewshot_average=0.4)
    rows = dict(Contestant.objects.with_evaluation().values_list("name", "fewshot_average"))
    assert rows == {"m": None, "n": 0.4}
