"""Input shapes (submission form) and output shapes (models, jobs, benchmark results)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contestants.models import Contestant
from contestants.options import ServingOptions, ServingOptionsError
from submissions.models import BenchmarkResult, EvaluationJob, JobStep
from submissions.services import ModelCardInput

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
BIG = 10**18


class SubmissionSerializer(serializers.Serializer):
    name = serializers.RegexField(
        NAME_PATTERN,
        max_length=100,
        error_messages={"invalid": "use 1-100 letters, digits, '.', '_' or '-'"},
    )
    organization = serializers.CharField(max_length=200, required=False, allow_blank=True)
    license = serializers.CharField(max_length=100, required=False, allow_blank=True)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    training_tokens = serializers.IntegerField(min_value=0, max_value=BIG, required=False)
    parameters = serializers.IntegerField(
        min_value=0, max_value=BIG, required=False, help_text="Claimed; recomputed from weights."
    )
    optimizer = serializers.CharField(max_length=500, required=False, allow_blank=True)
    lr_schedule = serializers.CharField(max_length=500, required=False, allow_blank=True)
    precision = serializers.CharField(max_length=50, required=False, allow_blank=True)
    archive = serializers.FileField(
        required=False,
        help_text=".tar.gz or .zip of a Hugging Face model directory, or a single GGUF file "
        "(converted to safetensors by the worker)",
    )
    checkpoint_path = serializers.CharField(
        max_length=1000, required=False, help_text="Server-side directory (if enabled)."
    )
    serving = serializers.JSONField(
        required=False,
        help_text='How the workers load the model, e.g. {"device": "cuda", "quantize_int8": true, '
        '"max_memory": {"cuda": "2GiB"}}; "auto" device by default.',
    )

    def validate_serving(self, value: Any) -> dict[str, Any]:
        try:
            return ServingOptions.from_dict(value).to_dict()
        except ServingOptionsError as error:
            raise serializers.ValidationError(str(error)) from None

    def card(self) -> ModelCardInput:
        data = self.validated_data
        fields = ModelCardInput.__dataclass_fields__
        return ModelCardInput(**{key: data[key] for key in fields if key in data})


class StepSerializer(serializers.ModelSerializer):
    duration_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = JobStep
        fields = [
            "name", "status", "started_at", "finished_at", "duration_s", "attempts", "detail",
            "outcome",
        ]  # fmt: skip


class JobSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="contestant.name", read_only=True)
    steps = StepSerializer(many=True, read_only=True)
    accounting = serializers.SerializerMethodField()

    class Meta:
        model = EvaluationJob
        fields = [
            "id",
            "url",
            "model",
            "status",
            "current_step",
            "failed_step",
            "reason",
            "created_at",
            "started_at",
            "finished_at",
            "attempts",
            "steps",
            "accounting",
        ]

    def get_url(self, job: EvaluationJob) -> str:
        return reverse("submissions-job-detail", args=[job.pk])

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_accounting(self, job: EvaluationJob) -> dict[str, Any]:
        return {
            "wall_time_s": job.wall_time_s,
            "device": job.device,
            "cpu_seconds": job.cpu_seconds,
            "gpu_seconds": job.gpu_seconds,
            "tokens_processed": job.tokens_processed,
            "energy_kwh": job.energy_kwh,
            "energy_source": job.energy_source,
            "energy_is_estimate": job.energy_is_estimate,
            "cost_usd": job.cost_usd,
            "co2e_g": job.co2e_g,
        }


class BenchmarkSerializer(serializers.ModelSerializer):
    class Meta:
        model = BenchmarkResult
        fields = ["id", "source", "method", "average", "average_std", "complete", "task_scores"]
        read_only_fields = fields


def _evaluation_field(name: str) -> serializers.FloatField:
    return serializers.FloatField(source=f"evaluation.{name}", read_only=True, allow_null=True)


class ModelSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()
    training_flops = serializers.FloatField(read_only=True, allow_null=True)
    tokens_per_parameter = serializers.FloatField(read_only=True, allow_null=True)
    owner = serializers.CharField(
        source="owner.username", read_only=True, default=None, allow_null=True
    )
    fewshot = serializers.SerializerMethodField()
    latest_job = serializers.SerializerMethodField()
    # Measured by the evaluation pipeline (contestants.ContestantEvaluation); null until then.
    fewshot_average = _evaluation_field("fewshot_average")
    fewshot_std = _evaluation_field("fewshot_std")
    eval_cost_usd = _evaluation_field("eval_cost_usd")
    eval_energy_kwh = _evaluation_field("eval_energy_kwh")
    eval_co2e_g = _evaluation_field("eval_co2e_g")

    class Meta:
        model = Contestant
        fields = [
            "name",
            "url",
            "page",
            "organization",
            "license",
            "description",
            "status",
            "owner",
            "created_at",
            "parameters",
            "training_tokens",
            "training_flops",
            "tokens_per_parameter",
            "weights_digest",
            "model_card",
            "serving",
            "fewshot_average",
            "fewshot_std",
            "fewshot",
            "eval_cost_usd",
            "eval_energy_kwh",
            "eval_co2e_g",
            "latest_job",
        ]

    def get_url(self, contestant: Contestant) -> str:
        return reverse("submissions-model-detail", args=[contestant.name])

    def get_page(self, contestant: Contestant) -> str:
        return f"/models/{contestant.name}/"

    @extend_schema_field(BenchmarkSerializer(allow_null=True))
    def get_fewshot(self, contestant: Contestant) -> dict[str, Any] | None:
        result = BenchmarkResult.objects.latest_for(contestant)
        return None if result is None else BenchmarkSerializer(result).data

    @extend_schema_field(JobSerializer(allow_null=True))
    def get_latest_job(self, contestant: Contestant) -> dict[str, Any] | None:
        job = contestant.jobs.first()
        return None if job is None else JobSerializer(job).data


class SubmissionAcceptedSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()
    page = serializers.CharField()
    job = JobSerializer()
    job_url = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = serializers.DictField()
