"""A probe row written by a worker, so the health page and tests can prove the worker runs."""

from __future__ import annotations

from django.db import models


class WorkerPing(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    sender_pid = models.IntegerField()
    handled_at = models.DateTimeField(null=True, blank=True)
    worker_pid = models.IntegerField(null=True, blank=True)
    worker_hostname = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"ping {self.pk} ({'handled' if self.handled_at else 'pending'})"

    @property
    def is_handled(self) -> bool:
        return self.handled_at is not None
