from __future__ import annotations

import os

from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from core.exceptions import DomainError
from core.models import WorkerPing
from core.tasks import ping


class WorkerPingSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkerPing
        fields = ["id", "created_at", "sender_pid", "handled_at", "worker_pid", "worker_hostname"]


@api_view(["POST"])
def worker_ping_create(request: Request) -> Response:
    """Send a task through the broker; a worker process marks it handled."""
    probe = WorkerPing.objects.create(sender_pid=os.getpid())
    ping.delay(probe.pk)
    return Response(WorkerPingSerializer(probe).data, status=status.HTTP_201_CREATED)


@api_view(["GET"])
def worker_ping_detail(request: Request, ping_id: int) -> Response:
    probe = WorkerPing.objects.filter(pk=ping_id).first()
    if probe is None:
        raise DomainError(f"no worker ping with id {ping_id}", code="not_found", status_code=404)
    return Response(WorkerPingSerializer(probe).data)
