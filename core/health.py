"""Checks behind ``GET /healthz``: the database and the broker each answer, or are named."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import connections


def check_database() -> str | None:
    """Return None when the database answers ``SELECT 1``, else a short reason."""
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any driver error means "down"
        return f"{type(exc).__name__}: {exc}".strip()[:300]
    return None


def check_broker() -> str | None:
    """Return None when the Celery broker accepts a connection, else a short reason."""
    from config.celery import app

    if app.conf.broker_url.startswith("filesystem"):
        folder = Path(app.conf.broker_transport_options["data_folder_in"])
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".healthz"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            return f"broker folder {folder} is not writable: {exc}"
        return None
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT
            )
    except Exception as exc:  # noqa: BLE001 - any transport error means "down"
        return f"{type(exc).__name__}: {exc}".strip()[:300]
    return None
