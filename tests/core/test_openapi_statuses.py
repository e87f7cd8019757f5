"""The OpenAPI schema lists the statuses each endpoint answers (issue 18)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

EXPECTED = {
    ("/api/arena/battles", "post"): {"201", "400", "429", "503"},
    ("/api/arena/battles/{battle_id}", "get"): {"200", "404"},
    ("/api/arena/battles/{battle_id}/vote", "post"): {"201", "400", "404", "409", "415"},
    ("/api/models", "post"): {"202", "400", "401", "409", "413", "429"},
    ("/api/models/{name}", "get"): {"200", "404"},
    ("/api/models/{name}/results", "post"): {"201", "400", "404"},
    ("/api/jobs/{job_id}", "get"): {"200", "404"},
    ("/api/leaderboards/publish", "post"): {"202", "400", "401", "403"},
    ("/api/leaderboards/{number}", "get"): {"200", "400", "404"},
    ("/api/worker-pings", "post"): {"201", "429"},
    ("/api/worker-pings/{ping_id}", "get"): {"200", "404"},
}


@pytest.fixture
def schema(client: Client, db: None) -> dict[str, Any]:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return dict(response.json())


@pytest.mark.parametrize(("path", "method"), sorted(EXPECTED))
def test_schema_lists_the_statuses_the_endpoint_returns(
    schema: dict[str, Any], path: str, method: str
) -> None:
    responses = set(schema["paths"][path][method]["responses"])
    assert EXPECTED[(path, method)] <= responses, sorted(responses)


def test_every_api_operation_documents_an_error_status(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            if "export" in path or path.startswith("/api/schema") or path == "/api/arena/session":
                continue
            assert any(status.startswith("4") for status in statuses), (method, path, statuses)


def test_model_owner_is_nullable_in_the_schema(schema: dict[str, Any]) -> None:
    owner = schema["components"]["schemas"]["Model"]["properties"]["owner"]
    assert owner.get("nullable") is True
