"""The submissions API: thin views over ``submissions.services``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated, IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from contestants.models import Contestant
from core.jsonbody import DepthLimitedJSONParser
from submissions import services
from submissions.exceptions import not_found
from submissions.models import EvaluationJob
from submissions.serializers import (
    BenchmarkSerializer,
    ErrorSerializer,
    JobSerializer,
    ModelSerializer,
    SubmissionAcceptedSerializer,
    SubmissionSerializer,
)

ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403, 404, 409)}


class ModelListView(APIView):
    parser_classes = [MultiPartParser, FormParser, DepthLimitedJSONParser]
    permission_classes = [IsAuthenticatedOrReadOnly]

    @extend_schema(
        responses={200: ModelSerializer(many=True), 400: ErrorSerializer},
        operation_id="models_list",
    )
    def get(self, request: Request) -> Response:
        contestants = Contestant.objects.select_related("owner", "evaluation").order_by("name")
        return Response(ModelSerializer(contestants, many=True).data)

    @extend_schema(
        request={"multipart/form-data": SubmissionSerializer},
        responses={
            202: SubmissionAcceptedSerializer,
            413: ErrorSerializer,
            429: ErrorSerializer,
            **ERRORS,
        },
        operation_id="models_submit",
    )
    def post(self, request: Request) -> Response:
        # Refuse an oversized body before Django reads it to disk.
        services.check_upload_size(int(request.META.get("CONTENT_LENGTH") or 0))
        serializer = SubmissionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = services.submit_model(
            user=request.user,
            card=serializer.card(),
            archive=serializer.validated_data.get("archive"),
            checkpoint_path=serializer.validated_data.get("checkpoint_path"),
        )
        body = accepted_body(job)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


def accepted_body(job: EvaluationJob) -> dict[str, Any]:
    model = ModelSerializer(job.contestant).data
    job_data = JobSerializer(job).data
    return {
        "name": model["name"],
        "url": model["url"],
        "page": model["page"],
        "job": job_data,
        "job_url": job_data["url"],
    }


class ModelDetailView(APIView):
    @extend_schema(responses={200: ModelSerializer, 404: ErrorSerializer, 400: ErrorSerializer})
    def get(self, request: Request, name: str) -> Response:
        return Response(ModelSerializer(services.get_contestant(name)).data)


class ModelCancelView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: JobSerializer, **ERRORS})
    def post(self, request: Request, name: str) -> Response:
        job = services.cancel_model(name=name, user=request.user)
        return Response(JobSerializer(job).data)


class ModelResultsView(APIView):
    parser_classes = [DepthLimitedJSONParser]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={201: BenchmarkSerializer, **ERRORS},
        description="Externally computed few-shot results (evalcore.fewshot.schema, version 1).",
    )
    def post(self, request: Request, name: str) -> Response:
        contestant = services.get_contestant(name)
        services.check_owner(contestant, request.user)
        result = services.store_benchmark_result(
            contestant=contestant, document=request.data, source="external", user=request.user
        )
        return Response(BenchmarkSerializer(result).data, status=status.HTTP_201_CREATED)


class JobDetailView(APIView):
    @extend_schema(responses={200: JobSerializer, 404: ErrorSerializer})
    def get(self, request: Request, job_id: int) -> Response:
        job = EvaluationJob.objects.select_related("contestant").filter(pk=job_id).first()
        if job is None:
            raise not_found("job", job_id)
        return Response(JobSerializer(job).data)
