from __future__ import annotations

import os
import socket

from celery import shared_task
from django.utils import timezone

from core.models import WorkerPing


@shared_task(name="core.ping")
def ping(ping_id: int) -> None:
    """Mark the ping as handled by this worker process (idempotent)."""
    WorkerPing.objects.filter(pk=ping_id, handled_at__isnull=True).update(
        handled_at=timezone.now(), worker_pid=os.getpid(), worker_hostname=socket.gethostname()
    )
