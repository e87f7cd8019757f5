"""The admin edits serving options through the same validation as everything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from contestants.models import Contestant
from contestants.services import record_evaluation

ADD_URL = "/admin/contestants/contestant/add/"


@pytest.fixture
def admin_client(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def form(**serving: Any) -> dict[str, Any]:
    return {
        "name": "m",
        "checkpoint_path": "/x",
        "status": "pending",
        "serving": json.dumps(serving),
        "model_card": "{}",
        # The read-only evaluation inline's empty formset.
        "evaluation-TOTAL_FORMS": "0",
        "evaluation-INITIAL_FORMS": "0",
        "evaluation-MIN_NUM_FORMS": "0",
        "evaluation-MAX_NUM_FORMS": "0",
    }


def test_admin_refuses_a_bad_serving_option_naming_it(admin_client: Client) -> None:
    response = admin_client.post(ADD_URL, form(device="tpu"))
    assert response.status_code == 200
    assert "serving.device: must be auto, cpu, cuda or cuda:N" in response.content.decode()
    assert not Contestant.objects.exists()


def test_admin_stores_valid_serving_options(admin_client: Client) -> None:
    response = admin_client.post(ADD_URL, form(device="cuda:1", max_memory={"cuda": "2GiB"}))
    assert response.status_code == 302, response.content.decode()[:2000]
    contestant = Contestant.objects.get(name="m")
    assert contestant.serving_options.device == "cuda:1"
    assert contestant.serving_options.max_memory == {"cuda": "2GiB"}


def test_admin_change_page_shows_the_evaluation_results_read_only(admin_client: Client) -> None:
    contestant = Contestant.objects.create(name="m", checkpoint_path="/x")
    record_evaluation(contestant_id=contestant.pk, fewshot_average=0.625)
    page = admin_client.get(f"/admin/contestants/contestant/{contestant.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "0.625" in html
    assert 'name="evaluation-0-fewshot_average"' not in html
