"""Fuzz tier: generated path parameters, bodies and content types against every endpoint.

Each request must answer below 500; under /api/ a refusal is the project's JSON error body
with a code, and a refused request adds no rows. Bounded: MAX_EXAMPLES per test, in-process
(the Django test client, SQLite), so the tier takes seconds in CI; the schemathesis test runs
the OpenAPI operations against a live server.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from arena.models import Battle, PooledAnswer, Prompt, Vote
from contestants.models import Contestant
from core.models import WorkerPing
from leaderboard.models import PublishJob, Release
from submissions.models import BenchmarkResult, EvaluationJob

MAX_EXAMPLES = int(os.environ.get("LADDER_FUZZ_EXAMPLES", "60"))  # more for a local hunt
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
TABLES = (
    Battle, Vote, Prompt, PooledAnswer, Contestant, EvaluationJob, BenchmarkResult,
    WorkerPing, Release, PublishJob,
)  # fmt: skip
ENDPOINTS = [
    ("post", "/api/arena/battles"),
    ("get", "/api/arena/battles/{}"),
    ("post", "/api/arena/battles/{}/vote"),
    ("get", "/api/arena/session"),
    ("get", "/api/models"),
    ("post", "/api/models"),
    ("get", "/api/models/{}"),
    ("post", "/api/models/{}/cancel"),
    ("post", "/api/models/{}/results"),
    ("get", "/api/jobs/{}"),
    ("get", "/api/leaderboards/"),
    ("get", "/api/leaderboards/latest"),
    ("post", "/api/leaderboards/publish"),
    ("get", "/api/leaderboards/publish/{}"),
    ("get", "/api/leaderboards/{}"),
    ("post", "/api/worker-pings"),
    ("get", "/api/worker-pings/{}"),
    ("get", "/models/{}/"),
    ("get", "/leaderboard/models/{}/"),
    ("get", "/leaderboard/releases/{}/"),
    ("get", "/arena/{}/"),
]
NASTY = ["\x00", "\ud800", "a\x00b", "x" * 5000, "-1", "0", "%00", "..", "[[[", "\udfff\x00"]
parameters = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(codec=None), max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.uuids().map(str),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec=None)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=1, max_value=200_000).map(lambda depth: b"[" * depth),
    st.binary(max_size=300),
    st.just(b'{"prompt": "a\\u0000b", "winner": "model_a\\ud800"}'),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=fuzz",
        "text/plain",
        "application/json; charset=latin-1",
    ]
)


@pytest.fixture
def clients(db: None) -> dict[str, Client]:
    user = User.objects.create_user("fuzzer")
    a = Contestant.objects.create(name="alpha", checkpoint_path="/x", owner=user, status="active")
    b = Contestant.objects.create(name="beta", checkpoint_path="/x", status="active")
    now = timezone.now()
    Battle.objects.create(
        model_a=a, model_b=b, status="ready", answer_a="x", answer_b="y",
        answer_a_at=now, answer_b_at=now,
    )  # fmt: skip
    token = Token.objects.create(user=user).key
    return {
        "anonymous": Client(),
        "token": Client(HTTP_AUTHORIZATION=f"Token {token}"),
        "bad-token": Client(HTTP_AUTHORIZATION="Token \x00nope"),
    }


def row_counts() -> dict[str, int]:
    return {table.__name__: table.objects.count() for table in TABLES}


def is_documented_unavailable(status: int, content_type: str, content: bytes) -> bool:
    """A 503 with a code (no two active models, queue down) is an answer, not a fault."""
    if status != 503 or not content_type.startswith("application/json"):
        return False
    return bool(json.loads(content)["error"]["code"])


def check_answer(response: Any, path: str, before: dict[str, int]) -> None:
    content_type = response.get("Content-Type", "")
    assert response.status_code < 500 or is_documented_unavailable(
        response.status_code, content_type, response.content
    ), (path, response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert row_counts() == before, (path, response.status_code)
        if path.startswith("/api/"):
            assert response["Content-Type"].startswith("application/json"), (path, response)
            error = json.loads(response.content)["error"]
            assert isinstance(error["code"], str) and error["code"], (path, error)
            assert isinstance(error["message"], str) and isinstance(error["fields"], dict)


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    parameter=parameters,
    body=bodies,
    content_type=content_types,
    who=st.sampled_from(["anonymous", "token", "bad-token"]),
)
def test_no_endpoint_answers_5xx_to_generated_requests(
    clients: dict[str, Client],
    endpoint: tuple[str, str],
    parameter: str,
    body: bytes,
    content_type: str,
    who: str,
) -> None:
    method, template = endpoint
    quoted = quote(parameter, safe="", errors="surrogatepass")  # raw bytes, as a client sends
    path = template.format(quoted)
    before = row_counts()
    client = clients[who]
    if method == "get":
        response = client.get(f"{path}?q={quoted}")
    else:
        response = client.generic("POST", path, body, content_type=content_type)
    check_answer(response, path, before)


@pytest.mark.django_db(transaction=True)
def test_openapi_operations_never_answer_5xx_on_a_live_server(live_server: Any) -> None:
    import schemathesis

    user = User.objects.create_user("schema-fuzzer")
    Contestant.objects.create(name="existing", checkpoint_path="/x", owner=user)
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # every endpoint of the four apps

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            response = case.call(base_url=live_server.url, headers=headers)
            headers_lower = {key.lower(): value for key, value in response.headers.items()}
            raw_type = headers_lower.get("content-type", "")
            content_type = raw_type[0] if isinstance(raw_type, list) else str(raw_type)
            assert response.status_code < 500 or is_documented_unavailable(
                response.status_code, content_type, response.content
            ), (case.method, case.path, response.status_code, response.text[:300])
            if response.status_code >= 400 and case.path.startswith("/api/"):
                assert response.json()["error"]["code"], response.text[:300]

        check()
