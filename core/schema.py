"""The error body in the OpenAPI schema: every endpoint lists the error statuses it answers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorBody = inline_serializer(
    name="ErrorBody",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(),
            },
        )
    },
)


def errors(*statuses: int) -> dict[int, Any]:
    """``responses=`` entries for these error statuses, each the project's error body."""
    return {status: OpenApiResponse(ErrorBody) for status in statuses}
