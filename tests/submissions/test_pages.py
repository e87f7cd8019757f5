"""The model page and the analysis page (server-rendered)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from contestants.models import Contestant
from contestants.services import record_evaluation
from submissions import analysis, services
from submissions.models import EvaluationJob
from tests.submissions.conftest import results_document

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def model(user: Any) -> Contestant:
    contestant = Contestant.objects.create(
        name="paged",
        checkpoint_path="/x",
        owner=user,
        parameters=1_000_000,
        training_tokens=40_000_000,
        organization="Ladder Lab",
        model_card={"architecture": "DenseForCausalLM", "optimizer": "AdamW"},
    )
    services.store_benchmark_result(
        contestant=contestant, document=results_document(), source="external"
    )
    return contestant


def test_model_page_shows_card_compute_scores_and_accounting(
    client: Client, model: Contestant
) -> None:
    job = services.create_job(contestant=model, user=None)
    EvaluationJob.objects.filter(pk=job.pk).update(
        status="finished", energy_source="estimate", energy_kwh=0.002, cost_usd=0.01, co2e_g=1.5
    )
    html = client.get("/models/paged/").content.decode()
    assert "Ladder Lab" in html and "AdamW" in html
    assert "2.400e+14 FLOPs" in html  # 6 · 1e6 · 4e7
    assert "40.0 (2.00× the compute-optimal ≈ 20)" in html
    assert "0.525" in html and "cb" in html and "f1_macro" in html
    assert "(estimate)" in html and "1.500 g" in html
    assert 'http-equiv="refresh"' not in html


def test_model_page_refreshes_while_a_job_runs(client: Client, model: Contestant) -> None:
    services.create_job(contestant=model, user=None)
    assert 'http-equiv="refresh"' in client.get("/models/paged/").content.decode()


def test_unknown_model_page_is_404(client: Client) -> None:
    assert client.get("/models/nobody/").status_code == 404


def test_analysis_page_without_a_release_says_so(client: Client) -> None:
    response = client.get("/analysis/")
    assert response.status_code == 200
    assert "No leaderboard release yet" in response.content.decode()


def test_analysis_page_plots_rated_models_with_a_fitted_curve(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    ratings = {}
    for index, (average, rating) in enumerate([(0.3, 900), (0.4, 1000), (0.5, 1060), (0.6, 1090)]):
        name = f"m{index}"
        contestant = Contestant.objects.create(
            name=name,
            checkpoint_path="/x",
            parameters=10**6 * (index + 1),
            training_tokens=10**8,
        )
        record_evaluation(contestant_id=contestant.pk, fewshot_average=average)
        ratings[name] = float(rating)
    monkeypatch.setattr(analysis, "latest_ratings", lambda: ratings)
    html = client.get("/analysis/").content.decode()
    assert html.count("<svg") == 2
    assert html.count("<circle") == 8
    assert "<polyline" in html and "Fitted saturating curve" in html


def test_saturating_fit_recovers_a_known_curve() -> None:
    truth = analysis.Curve(a=1200.0, b=800.0, c=3.0)
    points = [analysis.Point(str(x), x, truth(x)) for x in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9)]
    fitted = analysis.fit_saturating(points)
    assert fitted is not None
    assert fitted(0.4) == pytest.approx(truth(0.4), rel=1e-3)


def test_fit_needs_three_distinct_points() -> None:
    points = [analysis.Point("a", 0.1, 1.0), analysis.Point("b", 0.1, 2.0)]
    assert analysis.fit_saturating(points) is None


def test_svg_escapes_model_names() -> None:
    svg = analysis.scatter_svg([analysis.Point("<script>", 1.0, 2.0)], x_label="x", y_label="y")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
