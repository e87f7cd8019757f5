from __future__ import annotations

from django.contrib import admin

from core.models import WorkerPing


@admin.register(WorkerPing)
class WorkerPingAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "handled_at", "worker_pid", "worker_hostname"]
