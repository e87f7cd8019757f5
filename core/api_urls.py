from __future__ import annotations

from django.urls import path

from core import api

urlpatterns = [
    path("worker-pings", api.worker_ping_create, name="worker-ping-create"),
    path("worker-pings/<int:ping_id>", api.worker_ping_detail, name="worker-ping-detail"),
]
