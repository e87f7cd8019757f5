"""The submissions API: status codes and error codes for good and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from contestants.models import Contestant, ContestantEvaluation
from submissions.models import EvaluationJob
from tests.submissions.conftest import (
    results_document,
    submit,
    tar_directory,
    validate_job,
    zip_directory,
)

pytestmark = pytest.mark.django_db


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def archive(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return tar_directory(tiny_checkpoint, tmp_path / "tiny.tar.gz")


def test_submission_returns_202_with_model_and_job_urls(
    api: Client, archive: Path, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    sent: list[int] = []
    monkeypatch.setattr("submissions.tasks.evaluate.delay", lambda job_id: sent.append(job_id))
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api, archive, parameters=5, optimizer="AdamW", precision="bf16")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["url"] == "/api/models/tiny-one"
    assert body["job_url"] == f"/api/jobs/{body['job']['id']}"
    assert response["Location"] == "/api/models/tiny-one"
    assert sent == [body["job"]["id"]]
    contestant = Contestant.objects.get(name="tiny-one")
    assert contestant.status == Contestant.Status.PENDING
    assert contestant.parameters is None  # the worker counts them, once it has the weights
    assert contestant.model_card["claimed_parameters"] == 5
    assert api.get(body["job_url"]).json()["status"] == "queued"
    validate_job(body["job"]["id"])
    contestant.refresh_from_db()
    assert contestant.parameters == 30240  # counted from the weights, not the claimed 5
    assert contestant.model_card["claimed_parameters"] == 5
    assert contestant.model_card["architecture"] and len(contestant.weights_digest) == 64


def test_zip_archive_is_accepted(api: Client, tiny_checkpoint: Path, tmp_path: Path) -> None:
    response = submit(api, zip_directory(tiny_checkpoint, tmp_path / "m.zip"))
    assert response.status_code == 202, response.content


def test_submission_without_token_is_refused(client: Client, archive: Path) -> None:
    response = submit(client, archive)
    assert response.status_code in (401, 403)
    assert error_code(response) == "not_authenticated"


def test_bad_token_is_authentication_failed(archive: Path, db: None) -> None:
    response = submit(Client(HTTP_AUTHORIZATION="Token nope"), archive)
    assert response.status_code in (401, 403)
    assert error_code(response) == "authentication_failed"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "bad name/with slash"}, "name"),
        ({"name": ""}, "name"),
        ({"training_tokens": "lots"}, "training_tokens"),
        ({"training_tokens": -1}, "training_tokens"),
        ({"parameters": "1.5e9"}, "parameters"),
        ({"serving": "{not json"}, "serving"),
        ({"serving": '{"device": "tpu"}'}, "serving"),
        ({"serving": '{"max_memory": {"cuda": "lots"}}'}, "serving"),
    ],
)
def test_wrong_types_are_invalid_input_naming_the_field(
    api: Client, archive: Path, fields: dict[str, Any], field: str
) -> None:
    response = submit(api, archive, **fields)
    assert response.status_code == 400
    assert error_code(response) == "invalid_input"
    assert field in response.json()["error"]["fields"]


def test_missing_archive_and_path_is_missing_checkpoint(api: Client) -> None:
    response = submit(api)
    assert response.status_code == 400
    assert error_code(response) == "missing_checkpoint"


def test_json_body_that_is_not_an_object_is_refused(api: Client) -> None:
    response = api.post("/api/models", "[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "invalid_input"


def test_malformed_json_is_malformed_request(api: Client) -> None:
    response = api.post("/api/models", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "malformed_request"


def test_pickle_weights_are_refused_as_unsafe_weights(
    api: Client, checkpoint_copy: Callable[[], Path], tmp_path: Path
) -> None:
    directory = checkpoint_copy()
    (directory / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    response = submit(api, tar_directory(directory, tmp_path / "p.tar.gz"))
    assert response.status_code == 202  # the worker unpacks and refuses it
    job = validate_job(response.json()["job"]["id"])
    assert (job.status, job.failed_step) == ("failed", "validate")
    assert job.reason.startswith("unsafe_weights: ")
    assert Contestant.objects.get().status == Contestant.Status.FAILED
    store = Path(str(settings_root()))
    assert not list((store / "uploads").iterdir()) and not list((store / "checkpoints").iterdir())


def test_unknown_architecture_is_unsupported_architecture(
    api: Client, checkpoint_copy: Callable[[], Path], tmp_path: Path
) -> None:
    directory = checkpoint_copy()
    config = json.loads((directory / "config.json").read_text())
    config["architectures"] = ["EvilForCausalLM"]
    (directory / "config.json").write_text(json.dumps(config))
    response = submit(api, tar_directory(directory, tmp_path / "e.tar.gz"))
    assert response.status_code == 202
    job = validate_job(response.json()["job"]["id"])
    assert job.status == "failed" and job.reason.startswith("unsupported_architecture: ")


def test_upload_past_the_size_limit_is_413(api: Client, archive: Path, settings: Any) -> None:
    settings.LADDER_SUBMISSION_MAX_UPLOAD_BYTES = 1000
    response = submit(api, archive)
    assert response.status_code == 413
    assert error_code(response) == "upload_too_large"


def test_duplicate_name_is_409(
    api: Client, archive: Path, other_checkpoint: Path, tmp_path: Path
) -> None:
    assert submit(api, archive).status_code == 202
    response = submit(api, tar_directory(other_checkpoint, tmp_path / "o.tar.gz"))
    assert response.status_code == 409
    assert error_code(response) == "duplicate_name"


def test_duplicate_weights_under_another_name_fail_validation(api: Client, archive: Path) -> None:
    first = submit(api, archive)
    assert validate_job(first.json()["job"]["id"]).status == "running"  # validated, goes on
    response = submit(api, archive, name="renamed-copy")
    assert response.status_code == 202
    job = validate_job(response.json()["job"]["id"])
    assert job.status == "failed" and job.reason.startswith("duplicate_weights: ")
    assert Contestant.objects.get(name="renamed-copy").status == Contestant.Status.FAILED
    assert Contestant.objects.get(name="tiny-one").status == Contestant.Status.PENDING


def test_archive_with_an_unknown_suffix_is_refused_in_the_request(
    api: Client, archive: Path, tmp_path: Path
) -> None:
    renamed = archive.rename(tmp_path / "model.rar")
    response = submit(api, renamed)
    assert response.status_code == 400 and error_code(response) == "unsupported_archive"
    assert not Contestant.objects.exists()


def test_upload_is_kept_unread_until_the_worker_unpacks_it(api: Client, archive: Path) -> None:
    response = submit(api, archive)
    assert response.status_code == 202
    store = Path(str(settings_root()))
    [upload] = (store / "uploads").iterdir()
    assert upload.read_bytes() == archive.read_bytes()
    assert not (store / "checkpoints").exists() or not list((store / "checkpoints").iterdir())
    validate_job(response.json()["job"]["id"])
    assert not upload.exists()
    contestant = Contestant.objects.get()
    assert Path(contestant.checkpoint_path, "config.json").is_file()


def settings_root() -> Path:
    from django.conf import settings

    return Path(settings.LADDER_SUBMISSION_ROOT)


def test_submissions_past_the_daily_quota_are_429_with_retry_after(
    api: Client, tiny_checkpoint: Path, other_checkpoint: Path, tmp_path: Path, settings: Any
) -> None:
    settings.LADDER_SUBMISSIONS_PER_DAY = 1
    assert submit(api, tar_directory(tiny_checkpoint, tmp_path / "a.tar.gz")).status_code == 202
    response = submit(api, tar_directory(other_checkpoint, tmp_path / "b.tar.gz"), name="second")
    assert response.status_code == 429
    assert error_code(response) == "rate_limited"
    assert 0 < int(response["Retry-After"]) <= 86400


def test_server_side_path_is_disabled_by_default(api: Client, tiny_checkpoint: Path) -> None:
    response = submit(api, checkpoint_path=str(tiny_checkpoint))
    assert response.status_code == 400
    assert error_code(response) == "checkpoint_path_disabled"


def test_server_side_path_under_an_allowed_root_is_accepted(
    api: Client, tiny_checkpoint: Path, settings: Any
) -> None:
    settings.LADDER_SUBMISSION_ALLOWED_ROOTS = [str(tiny_checkpoint.parent)]
    response = submit(api, checkpoint_path=str(tiny_checkpoint))
    assert response.status_code == 202, response.content
    assert Contestant.objects.get().checkpoint_path == str(tiny_checkpoint)


def test_server_side_path_outside_the_roots_is_refused(
    api: Client, tiny_checkpoint: Path, settings: Any, tmp_path: Path
) -> None:
    settings.LADDER_SUBMISSION_ALLOWED_ROOTS = [str(tmp_path / "allowed")]
    for path in (str(tiny_checkpoint), str(tmp_path / "allowed" / ".." / "store")):
        response = submit(api, checkpoint_path=path)
        assert response.status_code == 400
        assert error_code(response) == "checkpoint_path_not_allowed"


def test_models_are_listed_and_shown_without_a_token(
    api: Client, client: Client, archive: Path
) -> None:
    job_id = submit(api, archive).json()["job"]["id"]
    listed = client.get("/api/models")
    assert listed.status_code == 200
    assert [m["name"] for m in listed.json()] == ["tiny-one"]
    detail = client.get("/api/models/tiny-one").json()
    assert detail["latest_job"]["status"] == "queued"
    validate_job(job_id)  # the worker counts the parameters
    detail = client.get("/api/models/tiny-one").json()
    assert detail["training_flops"] == 6 * 30240 * 1_000_000


def test_unknown_model_and_job_are_404(client: Client) -> None:
    assert error_code(client.get("/api/models/nobody")) == "unknown_model"
    response = client.get("/api/jobs/999")
    assert response.status_code == 404
    assert error_code(response) == "unknown_job"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("put", "/api/models"),
        ("delete", "/api/models/x"),
        ("get", "/api/models/x/cancel"),
        ("get", "/api/models/x/results"),
        ("post", "/api/jobs/1"),
    ],
)
def test_wrong_methods_are_405(api: Client, method: str, url: str) -> None:
    response = getattr(api, method)(url)
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


def test_owner_cancels_a_queued_job(api: Client, archive: Path) -> None:
    submit(api, archive)
    response = api.post("/api/models/tiny-one/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["reason"] == "cancelled by the owner"
    assert Contestant.objects.get().status == Contestant.Status.FAILED
    again = api.post("/api/models/tiny-one/cancel")
    assert again.status_code == 409
    assert error_code(again) == "not_cancellable"


def test_only_the_owner_may_cancel(api: Client, other_api: Client, archive: Path) -> None:
    submit(api, archive)
    response = other_api.post("/api/models/tiny-one/cancel")
    assert response.status_code == 403
    assert error_code(response) == "not_owner"
    assert EvaluationJob.objects.get().status == "queued"


def test_cancel_unknown_model_is_404(api: Client) -> None:
    response = api.post("/api/models/nobody/cancel")
    assert response.status_code == 404
    assert error_code(response) == "unknown_model"


@pytest.fixture
def owned_model(user: Any) -> Contestant:
    return Contestant.objects.create(name="owned", checkpoint_path="/nowhere", owner=user)


def test_external_results_are_stored_and_set_the_average(
    api: Client, owned_model: Contestant
) -> None:
    response = api.post(
        "/api/models/owned/results", results_document(), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["task_scores"]["cb"]["mean"] == 0.5
    evaluation = ContestantEvaluation.objects.get(contestant=owned_model)
    assert (evaluation.fewshot_average, evaluation.fewshot_std) == (0.525, 0.01)
    detail = api.get("/api/models/owned").json()
    assert detail["fewshot"]["task_scores"]["rte"]["mean"] == 0.55


def _broken(path: list[str], value: Any) -> dict[str, Any]:
    document = results_document()
    target = document
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (_broken(["tasks", "squad"], {"metrics": {}}), "tasks.squad"),
        (
            _broken(["tasks", "rte", "metrics", "bleu"], {"mean": 0.1, "std": 0}),
            "tasks.rte.metrics.bleu",
        ),
        (
            _broken(["tasks", "rte", "metrics", "accuracy", "mean"], 1.7),
            "tasks.rte.metrics.accuracy.mean",
        ),
        (
            _broken(["tasks", "rte", "metrics", "accuracy", "std"], KeyError),
            "tasks.rte.metrics.accuracy.std",
        ),
        (
            _broken(["tasks", "rte", "metrics", "accuracy", "mean"], "high"),
            "tasks.rte.metrics.accuracy.mean",
        ),
    ],
)
def test_invalid_results_are_400_naming_the_field(
    api: Client, owned_model: Contestant, document: dict[str, Any], field: str
) -> None:
    response = api.post("/api/models/owned/results", document, content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) == "invalid_results"
    assert field in response.json()["error"]["fields"]
    assert field in response.json()["error"]["message"]


@pytest.mark.parametrize("body", ["[1]", '"text"', "{bad json"])
def test_results_body_must_be_a_json_object(
    api: Client, owned_model: Contestant, body: str
) -> None:
    response = api.post("/api/models/owned/results", body, content_type="application/json")
    assert response.status_code == 400
    assert error_code(response) in ("invalid_results", "malformed_request")


def test_results_for_someone_elses_model_are_403(
    other_api: Client, owned_model: Contestant
) -> None:
    response = other_api.post(
        "/api/models/owned/results", results_document(), content_type="application/json"
    )
    assert response.status_code == 403
    assert error_code(response) == "not_owner"


def test_results_for_unknown_model_are_404(api: Client) -> None:
    response = api.post(
        "/api/models/nobody/results", results_document(), content_type="application/json"
    )
    assert response.status_code == 404
    assert error_code(response) == "unknown_model"


def test_submission_serving_options_are_stored_on_the_contestant(
    api: Client, archive: Path
) -> None:
    serving = {"device": "cpu", "quantize_int8": True}
    response = submit(api, archive, serving=json.dumps(serving))
    assert response.status_code == 202, response.content
    contestant = Contestant.objects.get(name="tiny-one")
    assert contestant.serving == {**serving, "max_memory": None}
    assert api.get("/api/models/tiny-one").json()["serving"] == contestant.serving


def test_bad_serving_option_error_names_the_option(api: Client, archive: Path) -> None:
    response = submit(api, archive, serving=json.dumps({"device": "tpu"}))
    assert response.status_code == 400
    assert "serving.device" in response.json()["error"]["fields"]["serving"][0]
    assert not Contestant.objects.exists()
