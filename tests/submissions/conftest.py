"""Fixtures for submissions: tiny checkpoints, archive builders, an API user with a token."""

from __future__ import annotations

import copy
import io
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models_zoo.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-dense", arch="dense")


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models_zoo.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-gpt2", arch="gpt2")


def tar_directory(directory: Path, out: Path, *, prefix: str = "model") -> Path:
    with tarfile.open(out, "w:gz") as archive:
        for path in sorted(directory.iterdir()):
            archive.add(path, arcname=f"{prefix}/{path.name}" if prefix else path.name)
    return out


def zip_directory(directory: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.iterdir()):
            archive.write(path, arcname=path.name)
    return out


def tar_with(out: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(out, "w:gz") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


@pytest.fixture
def checkpoint_copy(tiny_checkpoint: Path, tmp_path: Path) -> Callable[[], Path]:
    def make() -> Path:
        target = tmp_path / f"copy{len(list(tmp_path.glob('copy*')))}"
        shutil.copytree(tiny_checkpoint, target)
        return target

    return make


@pytest.fixture(autouse=True)
def _submission_settings(settings: Any, tmp_path: Path) -> None:
    settings.LADDER_SUBMISSION_ROOT = str(tmp_path / "store")
    settings.LADDER_SUBMISSION_ALLOWED_ROOTS = []
    settings.LADDER_SUBMISSIONS_PER_DAY = 10


@pytest.fixture
def user(db: None) -> User:
    return User.objects.create_user("team")


@pytest.fixture
def api(user: User) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture
def other_api(db: None) -> Client:
    stranger = User.objects.create_user("stranger")
    token, _ = Token.objects.get_or_create(user=stranger)
    return Client(HTTP_AUTHORIZATION=f"Token {token.key}")


RESULTS: dict[str, Any] = {
    "schema_version": 1,
    "method": "in_context",
    "model": {"name": "external", "path": None, "digest": None, "num_parameters": 1000},
    "tasks": {
        "cb": {
            "metrics": {
                "accuracy": {"mean": 0.6, "std": 0.05},
                "f1_macro": {"mean": 0.4, "std": 0.03},
            },
            "score": {"mean": 0.5, "std": 0.04},
        },
        "rte": {"metrics": {"accuracy": {"mean": 0.55, "std": 0.02}}},
    },
    "average": {"mean": 0.525, "std": 0.01, "tasks": ["cb", "rte"], "complete": False},
}


def results_document() -> dict[str, Any]:
    return copy.deepcopy(RESULTS)


def submit(client: Client, archive: Path | None = None, **fields: Any) -> Any:
    data: dict[str, Any] = {"name": "tiny-one", "training_tokens": 1_000_000, **fields}
    if archive is not None:
        with archive.open("rb") as handle:
            data["archive"] = handle
            return client.post("/api/models", data)
    return client.post("/api/models", data)


def validate_job(job_id: int) -> Any:
    """Run the worker's validate step of a job (where uploads are unpacked and checked)."""
    from submissions import pipeline, services
    from submissions.models import EvaluationJob

    job = EvaluationJob.objects.select_related("contestant").get(pk=job_id)
    token = services.claim_job(job_id=job.pk, worker="test")
    assert token is not None
    run = pipeline.Run(job.pk, token, job.contestant, pipeline.Meter(pipeline.prices()))
    try:
        pipeline.run_step(run, "validate")
    except pipeline.StepFailed as failure:
        services.fail_job(job, step=failure.step, reason=failure.reason)
    job.refresh_from_db()
    return job
