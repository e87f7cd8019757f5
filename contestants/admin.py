from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from contestants.models import EVALUATION_FIELDS, Contestant, ContestantEvaluation


class EvaluationInline(admin.StackedInline):
    """Results are measured by the pipeline, never typed in."""

    model = ContestantEvaluation
    fields = [*EVALUATION_FIELDS, "updated_at"]
    readonly_fields = fields
    can_delete = False
    extra = 0
    max_num = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Contestant)
class ContestantAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "license", "status", "device", "quantize_int8"]
    list_filter = ["status"]
    search_fields = ["name", "organization"]
    inlines = [EvaluationInline]

    @admin.display(description="device")
    def device(self, contestant: Contestant) -> str:
        return str(contestant.serving.get("device", "auto"))

    @admin.display(description="int8", boolean=True)
    def quantize_int8(self, contestant: Contestant) -> bool:
        return bool(contestant.serving.get("quantize_int8", False))
