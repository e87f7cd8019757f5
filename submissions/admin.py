from __future__ import annotations

from django.contrib import admin

from submissions.models import BenchmarkResult, EvaluationJob, JobStep


class JobStepInline(admin.TabularInline):
    model = JobStep
    extra = 0
    readonly_fields = ["name", "status", "started_at", "finished_at", "attempts", "detail"]
    fields = readonly_fields
    can_delete = False


@admin.register(EvaluationJob)
class EvaluationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "contestant", "status", "current_step", "failed_step", "created_at"]
    list_filter = ["status"]
    search_fields = ["contestant__name"]
    readonly_fields = [
        "lease_token",
        "heartbeat_at",
        "attempts",
        "worker",
        "wall_time_s",
        "cpu_seconds",
        "gpu_seconds",
        "tokens_processed",
        "energy_kwh",
        "energy_source",
        "cost_usd",
        "co2e_g",
    ]
    inlines = [JobStepInline]


@admin.register(BenchmarkResult)
class BenchmarkResultAdmin(admin.ModelAdmin):
    list_display = ["id", "contestant", "source", "method", "average", "average_std", "created_at"]
    list_filter = ["source", "method"]
    readonly_fields = ["document", "task_scores"]
