from __future__ import annotations

import pytest
from django.test import Client

from leaderboard import publishing
from leaderboard.export import COLUMNS
from leaderboard.models import PublishJob, Release

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(counts: None) -> Release:
    release = publishing.publish_release()
    assert release is not None
    return release


def error_code(response: object) -> str:
    return response.json()["error"]["code"]  # type: ignore[attr-defined]


def test_latest_returns_rows_with_release_metadata_and_digest(
    client: Client, published: Release
) -> None:
    body = client.get("/api/leaderboards/latest").json()
    assert body["number"] == 1 and body["input_digest"] == published.input_digest
    assert body["columns"] == list(COLUMNS)
    assert [r["model"] for r in body["rows"]] == ["alpha", "beta", "gamma"]
    assert list(body["rows"][0]) == list(COLUMNS)
    assert body["rows"][0]["organization"] == "Alpha Labs"
    assert body["below_min_votes"][0]["model"] == "delta"
    assert body["params"]["seed"] == 7 and body["code_version"] == "test"


def test_release_by_number_matches_latest(client: Client, published: Release) -> None:
    assert client.get("/api/leaderboards/1").json() == client.get("/api/leaderboards/latest").json()


def test_list_returns_releases_newest_first(client: Client, published: Release) -> None:
    publishing.publish_release(force=True)
    body = client.get("/api/leaderboards/").json()
    assert [r["number"] for r in body["results"]] == [2, 1]
    assert "rows" not in body["results"][0] and body["next_before"] is None


def test_list_pages_with_before(client: Client, published: Release) -> None:
    publishing.publish_release(force=True)
    body = client.get("/api/leaderboards/?before=2").json()
    assert [r["number"] for r in body["results"]] == [1]


def test_category_release_is_selected_by_query(
    client: Client, published: Release, add_counts: object
) -> None:
    add_counts([("alpha", "beta", 12, 3, 1, 0), ("beta", "gamma", 9, 4, 0, 1)], category="fr")  # type: ignore[operator]
    publishing.publish_release(category="fr")
    body = client.get("/api/leaderboards/latest?category=fr").json()
    assert body["category"] == "fr" and body["counted_votes"] == 30


def test_unknown_release_is_404_unknown_release(client: Client, published: Release) -> None:
    response = client.get("/api/leaderboards/99")
    assert response.status_code == 404 and error_code(response) == "unknown_release"


@pytest.mark.parametrize("number", ["abc", "0", "-1", "1.5", "１", "9999999999"])
def test_malformed_release_number_is_400(client: Client, published: Release, number: str) -> None:
    response = client.get(f"/api/leaderboards/{number}")
    assert response.status_code == 400 and error_code(response) == "invalid_release_number"
    assert "number" in response.json()["error"]["message"]


def test_latest_without_any_release_is_404(client: Client, db: None) -> None:
    response = client.get("/api/leaderboards/latest")
    assert response.status_code == 404 and error_code(response) == "unknown_release"


def test_unknown_category_is_404_and_overlong_category_400(
    client: Client, published: Release
) -> None:
    assert error_code(client.get("/api/leaderboards/latest?category=xx")) == "unknown_release"
    response = client.get("/api/leaderboards/latest?category=" + "x" * 51)
    assert response.status_code == 400 and error_code(response) == "invalid_category"


def test_malformed_before_is_400(client: Client, published: Release) -> None:
    response = client.get("/api/leaderboards/?before=x")
    assert response.status_code == 400 and error_code(response) == "invalid_release_number"


@pytest.mark.parametrize(
    "path", ["/api/leaderboards/", "/api/leaderboards/latest", "/api/leaderboards/1"]
)
def test_read_endpoints_refuse_writes_with_405(
    client: Client, published: Release, path: str
) -> None:
    for method in (client.post, client.put, client.delete):
        response = method(path)
        assert response.status_code == 405 and error_code(response) == "method_not_allowed"


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Token {token}"}


def test_staff_token_publish_queues_and_runs_a_job(
    client: Client, counts: None, staff_token: str, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = client.post(
            "/api/leaderboards/publish",
            {"seed": 3},
            content_type="application/json",
            **auth(staff_token),
        )
    assert response.status_code == 202
    job = PublishJob.objects.get(pk=response.json()["id"])
    assert job.status == "published" and job.release is not None
    assert job.release.params["seed"] == 3
    status = client.get(f"/api/leaderboards/publish/{job.pk}", **auth(staff_token)).json()
    assert status["status"] == "published" and status["release"] == 1


def test_publish_of_unchanged_counts_finishes_as_unchanged(
    client: Client, published: Release, staff_token: str, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = client.post(
            "/api/leaderboards/publish", {}, content_type="application/json", **auth(staff_token)
        )
    assert PublishJob.objects.get(pk=response.json()["id"]).status == "unchanged"


def test_publish_failure_is_recorded_on_the_job(
    client: Client, cast: object, staff_token: str, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = client.post(
            "/api/leaderboards/publish",
            {"category": "none"},
            content_type="application/json",
            **auth(staff_token),
        )
    job = PublishJob.objects.get(pk=response.json()["id"])
    assert (job.status, job.error_code) == ("failed", "no_votes")


def test_publish_needs_staff(client: Client, counts: None, user_token: str) -> None:
    response = client.post("/api/leaderboards/publish", {}, content_type="application/json")
    assert response.status_code in (401, 403) and error_code(response) == "not_authenticated"
    response = client.post(
        "/api/leaderboards/publish", {}, content_type="application/json", **auth(user_token)
    )
    assert response.status_code == 403 and error_code(response) == "permission_denied"
    assert not PublishJob.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bootstrap_rounds": -1}, "bootstrap_rounds"),
        ({"bootstrap_rounds": "many"}, "bootstrap_rounds"),
        ({"method": "glicko"}, "method"),
        ({"force": "perhaps"}, "force"),
        ({"category": "x" * 51}, "category"),
        ({"anchor_model": "alpha"}, "anchor_rating"),
    ],
)
def test_publish_rejects_bad_fields_with_400(
    client: Client, counts: None, staff_token: str, body: dict[str, object], field: str
) -> None:
    response = client.post(
        "/api/leaderboards/publish", body, content_type="application/json", **auth(staff_token)
    )
    assert response.status_code == 400 and error_code(response) == "invalid_input"
    assert field in response.json()["error"]["fields"]


def test_publish_rejects_malformed_json_and_non_objects(
    client: Client, counts: None, staff_token: str
) -> None:
    response = client.post(
        "/api/leaderboards/publish", "{nope", content_type="application/json", **auth(staff_token)
    )
    assert response.status_code == 400 and error_code(response) == "malformed_request"
    response = client.post(
        "/api/leaderboards/publish", "[1, 2]", content_type="application/json", **auth(staff_token)
    )
    assert response.status_code == 400 and error_code(response) == "invalid_input"


def test_publish_with_unknown_anchor_fails_the_job_with_unknown_model(
    client: Client, counts: None, staff_token: str, django_capture_on_commit_callbacks: object
) -> None:
    body = {"anchor_model": "nobody", "anchor_rating": 1000}
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        response = client.post(
            "/api/leaderboards/publish", body, content_type="application/json", **auth(staff_token)
        )
    assert PublishJob.objects.get(pk=response.json()["id"]).error_code == "unknown_model"


def test_publish_endpoint_refuses_get_and_unknown_job_is_404(
    client: Client, staff_token: str
) -> None:
    response = client.get("/api/leaderboards/publish", **auth(staff_token))
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"
    response = client.get("/api/leaderboards/publish/999", **auth(staff_token))
    assert response.status_code == 404 and error_code(response) == "unknown_publish_job"


def test_json_numbers_are_the_csv_numbers(client: Client, published: Release) -> None:
    import csv
    import io

    body = client.get("/api/leaderboards/latest").json()
    by_model = {r["model"]: r for r in csv.DictReader(io.StringIO(published.csv_text))}
    for row in body["rows"]:
        assert f"{row['rating']:.2f}" == by_model[row["model"]]["rating"]
        assert f"{row['win_rate']:.4f}" == by_model[row["model"]]["win_rate"]
    assert body["csv_url"] == "/leaderboard/releases/1.csv"
