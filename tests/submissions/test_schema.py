"""Schemathesis against the live OpenAPI schema: no submissions operation answers 5xx."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from contestants.models import Contestant

MAX_EXAMPLES = 12


@pytest.mark.django_db(transaction=True)
def test_submissions_api_never_answers_5xx(live_server: Any, tmp_path: Any) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    user = User.objects.create_user("fuzzer")
    Contestant.objects.create(name="existing", checkpoint_path="/x", owner=user)
    headers = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    schema = schema.include(path_regex=r"^/api/(models|jobs)")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/models", "/api/jobs/{job_id}"}
    assert len(operations) == 6

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=live_server.url, headers=headers)
            case.validate_response(response, checks=[not_a_server_error], headers=headers)

        check()
