"""Issue 18 regressions in submissions: NUL paths, unstorable results documents, nested JSON,
lying safetensors headers, one JSON error format and one 401 for a bad token."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from contestants.models import Contestant
from submissions.checkpoint import count_parameters
from submissions.exceptions import SubmissionError
from submissions.models import BenchmarkResult, EvaluationJob
from tests.submissions.conftest import results_document, submit, tar_directory, validate_job


@pytest.fixture
def owned(user: User) -> Contestant:
    return Contestant.objects.create(name="owned", checkpoint_path="/nonexistent", owner=user)


def error_code(response: Any) -> str:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return str(response.json()["error"]["code"])


def results_with_unstorable_text_are_stored(api: Client) -> None:
    document = results_document()
    document["model"]["name"] = "nul\x00 and \ud800 lone"
    document["protocol"] = {"note\x00": ["a\x00b"]}
    raw = json.dumps(document)  # escapes both as \u0000 and \ud800
    response = api.post("/api/models/owned/results", raw, content_type="application/json")
    assert response.status_code == 201, response.content
    stored = BenchmarkResult.objects.get().document
    assert stored["model"]["name"] == "nul\ufffd and \ufffd lone"
    assert stored["protocol"] == {"note\ufffd": ["a\ufffdb"]}


def test_results_document_with_nul_or_lone_surrogate_is_stored(
    api: Client, owned: Contestant
) -> None:
    results_with_unstorable_text_are_stored(api)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_results_document_with_nul_or_lone_surrogate_is_stored_on_postgres(
    postgres_and_redis: None, api: Client, owned: Contestant
) -> None:
    from django.db import connection

    assert connection.vendor == "postgresql"
    results_with_unstorable_text_are_stored(api)


def test_results_complete_must_be_a_boolean(api: Client, owned: Contestant) -> None:
    document = results_document()
    document["average"]["complete"] = "no"
    response = api.post("/api/models/owned/results", document, content_type="application/json")
    assert response.status_code == 400 and error_code(response) == "invalid_results"
    assert "average.complete" in response.json()["error"]["fields"]
    assert not BenchmarkResult.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/models/%00"),
        ("post", "/api/models/%00/cancel"),
        ("post", "/api/models/%00/results"),
        ("get", "/api/models/a%00b"),
    ],
)
def test_nul_in_an_api_path_parameter_is_a_json_404(
    api: Client, owned: Contestant, method: str, path: str
) -> None:
    response = getattr(api, method)(path)
    assert response.status_code == 404 and error_code(response) == "not_found"


@pytest.mark.parametrize("path", ["/models/%00/", "/leaderboard/models/%00/"])
def test_nul_in_a_page_path_is_a_404(client: Client, db: None, path: str) -> None:
    assert client.get(path).status_code == 404


def test_nul_in_a_query_parameter_is_a_json_400(client: Client, db: None) -> None:
    response = client.get("/api/models?name=%00")
    assert response.status_code == 400 and error_code(response) == "invalid_input"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_nul_in_path_parameters_is_404_on_postgres(
    postgres_and_redis: None, api: Client, owned: Contestant
) -> None:
    for path in ("/api/models/%00", "/models/%00/", "/leaderboard/models/%00/"):
        assert api.get(path).status_code == 404, path
    assert api.post("/api/models/%00/cancel").status_code == 404


@pytest.mark.parametrize(
    "path", ["/api/models", "/api/models/owned/results", "/api/leaderboards/publish"]
)
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(
    api: Client, owned: Contestant, user: User, path: str
) -> None:
    user.is_staff = True
    user.save()
    response = api.post(path, "[" * 100_000, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert error_code(response) == "malformed_request"
    assert not EvaluationJob.objects.exists() and not BenchmarkResult.objects.exists()


def safetensors(path: Path, header: Any, data: bytes) -> Path:
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_safetensors_header_nested_too_deep_is_invalid_safetensors(tmp_path: Path) -> None:
    path = safetensors(tmp_path / "deep.safetensors", '{"a":' + "[" * 100_000, b"")
    with pytest.raises(SubmissionError) as raised:
        count_parameters(path)
    assert raised.value.code == "invalid_safetensors"


def test_overlapping_tensors_are_refused_at_validation(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    path = safetensors(tmp_path / "overlap.safetensors", header, bytes(12))
    with pytest.raises(SubmissionError) as raised:
        count_parameters(path)
    assert raised.value.code == "invalid_safetensors" and "overlap" in raised.value.message


def test_adjacent_tensors_are_accepted(tmp_path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
        "empty": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
    }
    assert count_parameters(safetensors(tmp_path / "ok.safetensors", header, bytes(12))) == 3


def test_upload_with_deeply_nested_safetensors_header_is_refused_not_500(
    api: Client, checkpoint_copy: Callable[[], Path], tmp_path: Path
) -> None:
    directory = checkpoint_copy()
    # Random bytes after the header keep the archive's compression ratio under the limit.
    safetensors(directory / "model.safetensors", '{"a":' + "[" * 5000, os.urandom(200_000))
    response = submit(api, tar_directory(directory, tmp_path / "deep.tar.gz"))
    assert response.status_code == 202, response.content[:300]  # the worker inspects it
    job = validate_job(response.json()["job"]["id"])
    assert job.status == "failed" and job.reason.startswith("invalid_safetensors: ")


# --- One JSON error format under /api/ ------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/jobs/-1", "/api/nothing-here", "/api/arena/battles/x"])
def test_unmatched_api_path_is_a_json_404(client: Client, db: None, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_unmatched_page_path_stays_an_html_404(client: Client, db: None) -> None:
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_oversize_form_body_is_a_json_413(client: Client, db: None, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    form = "prompt=" + "x" * 3000
    response = client.post(
        "/api/arena/battles", form, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 413 and error_code(response) == "request_too_large"
    vote = json.dumps({"winner": "x" * 3000})
    path = "/api/arena/battles/00000000-0000-4000-8000-000000000000/vote"
    response = client.post(path, vote, content_type="application/json")
    assert response.status_code == 413 and error_code(response) == "request_too_large"


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/models"), ("post", "/api/leaderboards/publish"), ("get", "/api/session")],
)
def test_bad_token_is_401_on_every_endpoint(
    client: Client, db: None, method: str, path: str
) -> None:
    path = path.replace("/api/session", "/api/arena/session")
    response = getattr(client, method)(path, headers={"Authorization": "Token not-a-token"})
    assert response.status_code == 401 and error_code(response) == "authentication_failed"


@pytest.mark.parametrize("path", ["/api/models", "/api/leaderboards/publish"])
def test_missing_login_is_401(client: Client, db: None, path: str) -> None:
    response = client.post(path, {}, content_type="application/json")
    assert response.status_code == 401 and error_code(response) == "not_authenticated"


def test_database_outage_is_a_json_503(client: Client, db: None, monkeypatch: Any) -> None:
    from django.db import OperationalError
    from django.db.models.query import QuerySet

    def outage(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection to server at 127.0.0.1 port 5432 failed")

    monkeypatch.setattr(QuerySet, "_fetch_all", outage)
    client.raise_request_exception = False
    response = client.get("/api/models")
    assert response.status_code == 503 and error_code(response) == "database_unavailable"
    page = client.get("/models/owned/")
    assert page.status_code == 503


# --- Model output with a NUL in the pipeline's arena answers --------------------------------


def arena_answers_with_nul_are_stored(tiny_checkpoint: Path, user: User, monkeypatch: Any) -> None:
    from arena import generation
    from arena.models import PooledAnswer, Prompt, PromptSet
    from submissions import pipeline, services
    from submissions.checkpoint import inspect_checkpoint

    def nul_answers(contestant: Contestant, prompts: list[str], seed: int) -> list[Any]:
        record = {"new_tokens": 3, "note": "x\x00y"}
        return [generation.GeneratedAnswer(text="a\x00b", record=record) for _ in prompts]

    monkeypatch.setattr(generation, "generate_answer_records", nul_answers)
    facts = inspect_checkpoint(tiny_checkpoint)
    contestant = Contestant.objects.create(
        name="nul-writer", checkpoint_path=str(tiny_checkpoint), owner=user, serving={"device": "cpu"},
        parameters=facts.parameters, weights_digest=facts.digest,
    )  # fmt: skip
    pool = PromptSet.objects.create(name="nul-pool")
    for text in ("Hello?", "Two?"):
        Prompt.objects.create(prompt_set=pool, text=text, digest=text)
    job = services.create_job(contestant=contestant, user=user)
    token = services.claim_job(job_id=job.pk, worker="test")
    assert token is not None
    run = pipeline.Run(job.pk, token, contestant, pipeline.Meter(pipeline.prices()))
    run.model = type("Served", (), {"tokenizer": None, "device": "cpu"})()  # no torch load
    data = pipeline.arena_answers_step(run).data
    assert (data["answers"], data["new_tokens"]) == (2, 6)
    assert data["new_tokens_per_s"] > 0
    stored = PooledAnswer.objects.filter(contestant=contestant)
    assert set(stored.values_list("text", flat=True)) == {"a\ufffdb"}
    assert {answer.generation["note"] for answer in stored} == {"x\ufffdy"}


def test_arena_answers_step_stores_model_output_with_nul(
    tiny_checkpoint: Path, user: User, monkeypatch: Any
) -> None:
    arena_answers_with_nul_are_stored(tiny_checkpoint, user, monkeypatch)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_arena_answers_step_stores_model_output_with_nul_on_postgres(
    postgres_and_redis: None, tiny_checkpoint: Path, user: User, monkeypatch: Any
) -> None:
    from django.db import connection

    assert connection.vendor == "postgresql"
    arena_answers_with_nul_are_stored(tiny_checkpoint, user, monkeypatch)


def test_a_queued_job_is_not_resent_while_it_waits_its_turn(
    user: User, settings: Any, monkeypatch: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from submissions import services

    sent: list[int] = []
    monkeypatch.setattr("submissions.tasks.evaluate.delay", lambda job_id: sent.append(job_id))
    settings.LADDER_JOB_LEASE_S = 30
    settings.LADDER_JOB_QUEUED_RESEND_S = 600
    contestant = Contestant.objects.create(name="waiting", checkpoint_path="/x", owner=user)
    job = services.create_job(contestant=contestant, user=user)
    waited = timezone.now() - timedelta(seconds=300)  # ten leases behind a long evaluation
    EvaluationJob.objects.filter(pk=job.pk).update(heartbeat_at=waited)
    assert services.requeue_stale_jobs() == [] and sent == []
    lost = timezone.now() - timedelta(seconds=601)  # its message was lost in a broker restart
    EvaluationJob.objects.filter(pk=job.pk).update(heartbeat_at=lost)
    assert services.requeue_stale_jobs() == [job.pk]
    assert services.requeue_stale_jobs() == []


def test_demo_checkpoints_are_digested_so_they_cannot_be_resubmitted(
    db: None, tmp_path: Path
) -> None:
    from demo.setup import register_demo_contestants
    from submissions.checkpoint import inspect_checkpoint
    from submissions.services import check_unique_weights

    names = register_demo_contestants(tmp_path, tiny=True)
    for contestant in Contestant.objects.filter(name__in=names):
        digest = inspect_checkpoint(Path(contestant.checkpoint_path)).digest
        assert contestant.weights_digest == digest  # the worker's digest of the same files
        newcomer = Contestant(pk=10**9, name="copy")
        with pytest.raises(SubmissionError) as raised:
            check_unique_weights(newcomer, digest)
        assert raised.value.code == "duplicate_weights"


def test_a_failed_submission_is_retried_under_the_same_name_and_its_files_go(
    api: Client,
    checkpoint_copy: Callable[[], Path],
    tiny_checkpoint: Path,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.conf import settings

    directory = checkpoint_copy()
    (directory / "pytorch_model.bin").write_bytes(b"\\x80\\x04K\\x01.")
    first = submit(api, tar_directory(directory, tmp_path / "bad.tar.gz"))
    with django_capture_on_commit_callbacks(execute=True):  # the clean-up runs on commit
        job = validate_job(first.json()["job"]["id"])
    assert job.status == "failed" and job.reason.startswith("unsafe_weights: ")
    store = Path(settings.LADDER_SUBMISSION_ROOT)
    assert not list((store / "uploads").iterdir()) and not list((store / "checkpoints").iterdir())
    again = submit(api, tar_directory(tiny_checkpoint, tmp_path / "good.tar.gz"))
    assert again.status_code == 202, again.content
    assert Contestant.objects.get(name="tiny-one").status == Contestant.Status.PENDING
    kept = Contestant.objects.get(name__startswith="tiny-one~failed-")
    assert kept.jobs.get().reason.startswith("unsafe_weights")  # the history stays


def test_a_name_that_failed_for_someone_else_stays_taken(
    api: Client, other_api: Client, archive_path: Path
) -> None:
    first = submit(other_api, archive_path)
    Contestant.objects.filter(name="tiny-one").update(status=Contestant.Status.FAILED)
    assert first.status_code == 202
    response = submit(api, archive_path)
    assert response.status_code == 409 and error_code(response) == "duplicate_name"


@pytest.fixture
def archive_path(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return tar_directory(tiny_checkpoint, tmp_path / "tiny.tar.gz")
