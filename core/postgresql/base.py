"""Django's PostgreSQL backend, with a health check that costs no round trip.

Without a check, a persistent connection outlives a PostgreSQL restart: each web thread's first
request after the restart fails on the socket the old server closed (a 503, although the new
server is up; tests/arena/test_postgres_restart.py). Django's ``CONN_HEALTH_CHECKS`` runs
``SELECT 1`` before a request reuses a connection, a second round trip for the arena vote, which
is one statement (bench/RESULTS.md). A server that ends a session (restart, shutdown,
``pg_terminate_backend``, ``idle_session_timeout``) sends a FATAL message and closes the socket,
and a healthy idle connection has nothing to read, so a readable socket between requests means
the session is over: the connection is closed and the request connects afresh. A peer that
vanished without closing (a network partition) is not seen; the query fails as before.
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base


def ended_by_server(connection: Any) -> bool:
    """Whether the server closed (or said goodbye on) this idle psycopg connection."""
    if connection.closed or connection.broken:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        """Django's hook, run once per request before it reuses a persistent connection."""
        if (
            self.connection is None
            or not self.health_check_enabled
            or self.health_check_done
            or self.pool
        ):
            return
        if ended_by_server(self.connection):
            self.close()
        self.health_check_done = True
