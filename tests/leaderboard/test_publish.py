from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from django.db import IntegrityError, transaction

from core.exceptions import DomainError
from leaderboard import publishing
from leaderboard.export import COLUMNS
from leaderboard.models import Release, ReleaseRow, ReleaseSequence
from leaderboard.ratings import counts_from_json, input_digest

pytestmark = pytest.mark.django_db


def publish(**kwargs: object) -> Release:
    release = publishing.publish_release(**kwargs)  # type: ignore[arg-type]
    assert release is not None
    return release


def test_first_release_is_number_one_with_rows_in_rank_order(counts: None) -> None:
    release = publish()
    assert release.number == 1
    rows = list(release.rows.ranked().values_list("model", "rank"))
    assert [m for m, _ in rows] == ["alpha", "beta", "gamma"]
    assert rows[0][1] == 1


def test_release_records_params_digest_counts_and_code_version(counts: None) -> None:
    release = publish()
    assert release.method == "bt"
    assert release.params["bootstrap_rounds"] == 40 and release.params["seed"] == 7
    assert release.code_version == "test"
    stored = counts_from_json(release.input_counts)
    assert input_digest(stored) == release.input_digest
    assert release.counted_votes == sum(sum(r[2:]) for r in stored) == 173


def test_models_under_min_votes_are_listed_apart(counts: None) -> None:
    release = publish()
    below = list(release.rows.below_threshold().values_list("model", "votes"))
    assert below == [("delta", 6)]


def test_unchanged_counts_publish_nothing(counts: None) -> None:
    publish()
    assert publishing.publish_release() is None
    assert Release.objects.count() == 1


def test_new_votes_publish_the_next_number(counts: None, add_counts: Callable[..., None]) -> None:
    first = publish()
    add_counts([("gamma", "alpha", 5, 0, 0, 0)])
    second = publish()
    assert (first.number, second.number) == (1, 2)
    assert second.input_digest != first.input_digest


def test_changed_parameters_publish_even_with_the_same_counts(counts: None) -> None:
    publish()
    release = publish(params=publishing.default_params(seed=8))
    assert release.number == 2


def test_forced_publish_of_unchanged_counts_gets_a_new_number(counts: None) -> None:
    first = publish()
    second = publish(force=True)
    assert second.number == first.number + 1
    assert second.csv_text == first.csv_text


def test_numbers_are_never_reused_even_if_a_release_row_disappears(counts: None) -> None:
    publish()
    second = publish(force=True)
    ReleaseRow.objects.filter(release=second).delete()
    second.delete()  # only possible outside the service; the admin forbids it
    assert publish(force=True).number == 3


def test_release_numbers_are_unique_per_category(counts: None) -> None:
    publish()
    with pytest.raises(IntegrityError), transaction.atomic():
        Release.objects.create(
            number=1,
            category="",
            created_at=publishing.timezone.now(),
            method="bt",
            params={},
            input_digest="x",
            input_counts="[]",
            vote_count=0,
            counted_votes=0,
            model_count=0,
            code_version="x",
            csv_text="",
        )


def test_category_boards_number_their_releases_separately(
    counts: None, add_counts: Callable[..., None]
) -> None:
    add_counts([("alpha", "beta", 12, 3, 1, 0), ("beta", "gamma", 9, 4, 0, 1)], category="fr")
    overall = publish()
    french = publish(category="fr")
    assert (overall.number, french.number) == (1, 1)
    assert french.category == "fr" and french.counted_votes == 30
    assert set(ReleaseSequence.objects.values_list("category", "last_number")) == {
        ("", 1),
        ("fr", 1),
    }


def test_board_without_votes_raises_no_votes(cast: object) -> None:
    with pytest.raises(DomainError) as caught:
        publishing.publish_release(category="de")
    assert caught.value.code == "no_votes" and caught.value.status_code == 422


def test_unratable_data_raises_the_engine_code(
    cast: object, add_counts: Callable[..., None]
) -> None:
    add_counts([("alpha", "beta", 5, 0, 0, 0)])
    with pytest.raises(DomainError) as caught:
        publishing.publish_release(params=publishing.default_params(ridge=0.0))
    assert caught.value.code == "unbounded_rating"
    assert Release.objects.count() == 0


def test_failed_row_insert_leaves_no_release_behind(
    counts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ReleaseRow.objects, "bulk_create", explode)
    with pytest.raises(RuntimeError):
        publishing.publish_release()
    assert Release.objects.count() == 0
    assert ReleaseSequence.objects.filter(last_number__gt=0).count() == 0


def test_rows_copy_the_model_card_facts_at_publish_time(
    counts: None, cast: dict[str, object]
) -> None:
    release = publish()
    cast["alpha"].organization = "Renamed"  # type: ignore[attr-defined]
    cast["alpha"].save()  # type: ignore[attr-defined]
    row = release.rows.get(model="alpha")
    assert (row.organization, row.license, row.fewshot_average) == ("Alpha Labs", "MIT", 0.61)
    assert release.rows.get(model="beta").parameters == 7_000_000


def test_csv_has_the_documented_columns_and_one_line_per_model(counts: None) -> None:
    release = publish()
    rows = list(csv.DictReader(io.StringIO(release.csv_text)))
    assert tuple(rows[0].keys()) == COLUMNS
    by_model = {r["model"]: r for r in rows}
    assert {"alpha", "beta", "gamma"} <= set(by_model)
    assert by_model["alpha"]["organization"] == "Alpha Labs"
    assert by_model["alpha"]["fewshot_average"] == "0.61"
    assert by_model["gamma"]["eval_cost_usd"] == "1.5"


def test_changes_list_rank_moves_rating_deltas_and_new_models(
    counts: None, add_counts: Callable[..., None], cast: dict[str, object]
) -> None:
    publish()
    add_counts([("gamma", "alpha", 80, 5, 0, 0), ("gamma", "beta", 60, 5, 0, 0)])
    second = publish()
    changes = second.changes
    assert changes["previous"] == 1
    gamma = next(m for m in changes["moves"] if m["model"] == "gamma")
    assert gamma["rank_before"] == 3 and gamma["rank"] < 3 and gamma["rank_change"] > 0
    assert gamma["rating_delta"] > 0


def test_heatmap_data_holds_the_top_models(counts: None) -> None:
    charts = publish().charts
    assert charts["models"] == ["alpha", "beta", "gamma"]
    assert charts["battles"][0][1] == 55 and charts["battles"][0][0] is None
    assert charts["observed"][0][1] == pytest.approx(30 / 48)
    predicted = charts["predicted"]
    assert predicted[0][1] + predicted[1][0] == pytest.approx(1.0)
    assert predicted[0][1] > 0.5


def test_release_records_the_vote_log_position(counts: None) -> None:
    release = publish()
    assert release.vote_count >= 0
    assert release.last_vote_id is None or release.last_vote_id >= 1


def test_unknown_method_is_refused_with_invalid_parameter(counts: None) -> None:
    with pytest.raises(DomainError) as caught:
        publishing.default_params(method="glicko")
    assert caught.value.code == "invalid_parameter" and "method" in caught.value.fields


def test_elo_is_a_release_method(counts: None) -> None:
    assert publishing.default_params(method="elo").method == "elo"


def test_bad_configured_parameter_names_the_field(counts: None, settings: object) -> None:
    settings.LEADERBOARD_RATING_PARAMS = {"bootstrap_rounds": -5}  # type: ignore[attr-defined]
    with pytest.raises(DomainError) as caught:
        publishing.default_params()
    assert caught.value.code == "invalid_parameter" and "bootstrap_rounds" in caught.value.message


def test_davidson_releases_reproduce_too(counts: None) -> None:
    release = publish(params=publishing.default_params(method="davidson"))
    assert release.method == "davidson"
    assert publishing.verify_release(release=release).ok
