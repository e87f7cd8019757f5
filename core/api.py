from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle

from core.exceptions import DomainError
from core.models import WorkerPing
from core.schema import errors
from core.tasks import ping


class WorkerPingSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkerPing
        fields = ["id", "created_at", "sender_pid", "handled_at", "worker_pid", "worker_hostname"]


class PublicWorkerPingSerializer(serializers.ModelSerializer):
    """What anyone may see: whether a worker handled the ping, not its pid or host."""

    class Meta:
        model = WorkerPing
        fields = ["id", "created_at", "handled_at"]


class WorkerPingThrottle(AnonRateThrottle):
    """Anonymous pings each queue a task: LADDER_WORKER_PING_RATE per client address."""

    scope = "worker_ping"

    def get_rate(self) -> str:
        return str(settings.LADDER_WORKER_PING_RATE)


def _ping_data(request: Request, probe: WorkerPing) -> Any:
    staff = bool(getattr(request.user, "is_staff", False))
    return (WorkerPingSerializer if staff else PublicWorkerPingSerializer)(probe).data


@extend_schema(request=None, responses={201: PublicWorkerPingSerializer, **errors(429)})
@api_view(["POST"])
@throttle_classes([WorkerPingThrottle])
def worker_ping_create(request: Request) -> Response:
    """Send a task through the broker; a worker process marks it handled."""
    probe = WorkerPing.objects.create(sender_pid=os.getpid())
    ping.delay(probe.pk)
    return Response(_ping_data(request, probe), status=status.HTTP_201_CREATED)


@extend_schema(responses={200: PublicWorkerPingSerializer, **errors(404)})
@api_view(["GET"])
def worker_ping_detail(request: Request, ping_id: int) -> Response:
    probe = WorkerPing.objects.filter(pk=ping_id).first()
    if probe is None:
        raise DomainError(f"no worker ping with id {ping_id}", code="not_found", status_code=404)
    return Response(_ping_data(request, probe))
