"""core.postgresql: a connection that the server ended is replaced before a request reuses it."""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def backend_pid(connection: Any) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def new_request(connection: Any) -> None:
    """What Django runs between two requests (the request_started/finished signals)."""
    connection.close_if_unusable_or_obsolete()


@pytest.mark.integration
def test_a_connection_the_server_ended_is_replaced_before_the_next_request_uses_it(
    postgres_and_redis: None, transactional_db: None
) -> None:
    import psycopg
    from django.db import connection

    assert connection.settings_dict["ENGINE"] == "core.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    first = backend_pid(connection)
    new_request(connection)
    assert backend_pid(connection) == first  # a healthy connection is kept

    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [first])
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + 10
    while not poller.poll(50) and time.monotonic() < deadline:
        pass  # the backend ends asynchronously
    new_request(connection)
    assert backend_pid(connection) != first  # no OperationalError: a new session


@pytest.mark.integration
def test_the_health_check_costs_no_round_trip(
    postgres_and_redis: None, transactional_db: None, tmp_path: Path
) -> None:
    """libpq's protocol trace of the check is empty; Django's own check (SELECT 1) is not."""
    from django.db import connection

    backend_pid(connection)
    pgconn = connection.connection.pgconn

    def traced(check: Callable[[], object]) -> str:
        path = tmp_path / "trace.txt"
        with path.open("w") as trace:
            pgconn.trace(trace.fileno())
            try:
                check()
            finally:
                pgconn.untrace()
        return path.read_text()

    new_request(connection)
    assert traced(connection.close_if_health_check_failed) == ""
    assert connection.health_check_done and connection.connection.pgconn is pgconn
    assert "SELECT 1" in traced(connection.is_usable)  # the trace does see a round trip
