"""Write operations on the registry's evaluation results."""

from __future__ import annotations

from django.db import transaction

from contestants.models import EVALUATION_FIELDS, ContestantEvaluation


def record_evaluation(*, contestant_id: int, **results: float | None) -> ContestantEvaluation:
    """Set some of a contestant's evaluation results, leaving the others as they were.

    Raises:
        TypeError: for a name that is not one of ``EVALUATION_FIELDS``.
    """
    unknown = sorted(set(results) - set(EVALUATION_FIELDS))
    if unknown:
        raise TypeError(f"not an evaluation result: {', '.join(unknown)}")
    with transaction.atomic():
        evaluation, _ = ContestantEvaluation.objects.select_for_update().get_or_create(
            contestant_id=contestant_id
        )
        for name, value in results.items():
            setattr(evaluation, name, value)
        evaluation.save()
    return evaluation
