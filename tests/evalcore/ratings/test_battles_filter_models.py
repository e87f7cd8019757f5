"""A category slice rates only the models that battled in that category."""

from __future__ import annotations

from evalcore.ratings.battles import BattleFilter, BattleTable


def test_category_slice_drops_models_without_battles_in_it() -> None:
    records = [
        {"model_a": "a", "model_b": "b", "winner": "model_a", "category": "x"},
        {"model_a": "b", "model_b": "a", "winner": "tie", "category": "x"},
        {"model_a": "a", "model_b": "c", "winner": "model_b", "category": "y"},
    ]
    table = BattleTable.from_records(records)
    assert table.models == ("a", "b", "c")
    sliced = table.where(BattleFilter(category="x"))
    assert sliced.models == ("a", "b")
    assert [sliced.models[i] for i in sliced.model_a] == ["a", "b"]
    assert [sliced.models[i] for i in sliced.model_b] == ["b", "a"]
