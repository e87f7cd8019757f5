from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest

from evalcore.errors import EmptyInputError, InvalidRecordError, UnknownModelError
from evalcore.ratings import PairCounts
from evalcore.types import Battle, Outcome

MIRROR = {
    "model_a": "model_b",
    "model_b": "model_a",
    "tie": "tie",
    "tie (bothbad)": "tie (bothbad)",
}


def test_battles_aggregate_to_canonical_pair_counts(battles):
    counts, report = PairCounts.from_battles(battles)
    assert counts.models == ("alpaca", "bison", "camel")
    assert counts.first.tolist() == [0, 0, 1]
    assert counts.second.tolist() == [1, 2, 2]
    # alpaca-bison: alpaca won twice (seat A and seat B), bison once, one both-bad.
    assert counts.counts.tolist() == [[2, 1, 0, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert counts.total_votes == len(battles)
    assert report.skipped_rows == 0 and report.total_rows == len(battles)


def test_votes_and_decisions_per_model(battles):
    counts, _ = PairCounts.from_battles(battles)
    assert counts.votes_per_model().tolist() == [6, 7, 5]
    wins, losses = counts.decided_per_model()
    assert wins.tolist() == [3, 2, 2]
    assert losses.tolist() == [2, 3, 2]
    assert counts.battle_matrix()[0, 1] == counts.battle_matrix()[1, 0] == 4
    assert counts.win_matrix()[0, 1] == 2 and counts.win_matrix()[1, 0] == 1


def test_swapping_seats_with_mirrored_winner_changes_nothing(battles):
    swapped = [
        {**b, "model_a": b["model_b"], "model_b": b["model_a"], "winner": MIRROR[b["winner"]]}
        for b in battles
    ]
    original, _ = PairCounts.from_battles(battles)
    mirrored, _ = PairCounts.from_battles(swapped)
    assert np.array_equal(original.counts, mirrored.counts)
    assert original.digest() == mirrored.digest()


def test_digest_ignores_row_order_and_matches_the_aggregated_form(battles):
    shuffled = battles[:]
    random.Random(3).shuffle(shuffled)
    counts, _ = PairCounts.from_battles(battles)
    assert PairCounts.from_battles(shuffled).counts.digest() == counts.digest()
    rows = counts.to_rows()
    assert PairCounts.from_rows(rows).digest() == counts.digest()
    assert PairCounts.from_rows(reversed(rows)).digest() == counts.digest()


def test_digest_is_sha256_of_the_documented_serialisation():
    counts = PairCounts.from_rows(
        [('modèle "x"', "b\\c", 1, 2, 3, 4), ("b\\c", "zz\u2603", 5, 0, 0, 1)]
    )

    def line(value) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    expected = hashlib.sha256(b"ladder.pair-counts.v1\n" + line(list(counts.models)))
    for i, j, row in zip(
        counts.first.tolist(), counts.second.tolist(), counts.counts.tolist(), strict=True
    ):
        expected.update(line([counts.models[i], counts.models[j], *row]))
    assert counts.digest() == expected.hexdigest()


def test_digest_changes_with_any_count(battles):
    counts, _ = PairCounts.from_battles(battles)
    changed, _ = PairCounts.from_battles(battles[:-1])
    assert changed.digest() != counts.digest()
    assert len(counts.digest()) == 64


def test_from_rows_sums_both_orientations_and_accepts_tuples():
    counts = PairCounts.from_rows(
        [
            ("b", "a", 3, 1, 2, 0),
            {
                "model_a": "a",
                "model_b": "b",
                "model_a_wins": 1,
                "model_b_wins": 0,
                "ties": 0,
                "both_bad": 4,
            },
            ("a", "c", "2", "0", "0", "0"),
            ("c", "d", 0, 0, 0, 0),  # all-zero rows are ignored, and so is model d
        ]
    )
    assert counts.models == ("a", "b", "c")
    assert counts.counts.tolist() == [[2, 3, 2, 4], [2, 0, 0, 0]]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (("a", "a", 1, 0, 0, 0), "model_b"),
        (("", "b", 1, 0, 0, 0), "model_a"),
        (("a", "b", -1, 0, 0, 0), "model_a_wins"),
        (("a", "b", 1, 1.5, 0, 0), "model_b_wins"),
        (
            {"model_a": "a", "model_b": "b", "model_a_wins": 1, "model_b_wins": 0, "ties": 0},
            "both_bad",
        ),
    ],
)
def test_from_rows_names_the_bad_row_and_field(row, field):
    with pytest.raises(InvalidRecordError) as caught:
        PairCounts.from_rows([("x", "y", 1, 0, 0, 0), row])
    assert caught.value.row == 1
    assert caught.value.field == field
    assert "row 1" in str(caught.value) and field in str(caught.value)
    assert caught.value.code == "invalid_record"


def test_from_rows_without_any_vote_is_empty():
    with pytest.raises(EmptyInputError):
        PairCounts.from_rows([("a", "b", 0, 0, 0, 0)])


def test_battle_dataclass_records_are_accepted(battles):
    typed = [
        Battle(b["model_a"], b["model_b"], Outcome.from_winner(b["winner"]), b["tstamp"])
        for b in battles
    ]
    assert (
        PairCounts.from_battles(typed).counts.digest()
        == PairCounts.from_battles(battles).counts.digest()
    )


def test_index_of_unknown_model_raises_unknown_model(battles):
    counts, _ = PairCounts.from_battles(battles)
    assert counts.index_of("camel") == 2
    with pytest.raises(UnknownModelError) as caught:
        counts.index_of("zebra", field="anchor")
    assert caught.value.code == "unknown_model" and caught.value.http_status == 404


def test_counts_arrays_are_read_only(battles):
    counts, _ = PairCounts.from_battles(battles)
    with pytest.raises(ValueError):
        counts.counts[0, 0] = 99
