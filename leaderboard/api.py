"""JSON API: ``/api/leaderboards/…`` (read: anyone; publish: staff, by session or token)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from core.schema import errors
from evalcore.ratings import RatingParams
from leaderboard import publishing, queries
from leaderboard.exceptions import (
    UnknownPublishJob,
    parse_category,
    parse_release_number,
    parse_view,
    style_view_of,
)
from leaderboard.export import COLUMNS, row_dicts
from leaderboard.models import PublishJob, Release
from leaderboard.pages import change_summary, interval_method, release_csv_url
from leaderboard.serializers import PublishRequestSerializer

LIST_LIMIT = 100


def release_metadata(release: Release, *, full_changes: bool = True) -> dict[str, Any]:
    return {
        "number": release.number,
        "category": release.category,
        "created_at": release.created_at.isoformat(),
        "method": release.method,
        "params": release.params,
        "input_digest": release.input_digest,
        "vote_count": release.vote_count,
        "last_vote_id": release.last_vote_id,
        "counted_votes": release.counted_votes,
        "model_count": release.model_count,
        "code_version": release.code_version,
        "changes": release.changes if full_changes else change_summary(release.changes),
        "csv_url": release_csv_url(release),
        "interval_method": interval_method(release),
    }


def style_body(release: Release) -> dict[str, Any]:
    """The style-controlled table, in the shape of :func:`release_body`."""
    style = style_view_of(release)
    rows = style["rows"]
    listed = [
        {**row, "interval": "sandwich", "preliminary": flag}
        for row, flag in zip(
            row_dicts(r for r in rows if not r["below_min_votes"]),
            [r["preliminary"] for r in rows if not r["below_min_votes"]],
        )
    ]
    return {
        **release_metadata(release),
        "view": "style",
        "interval_method": "sandwich",
        "style_params": style["params"],
        "style_input_digest": style["input_digest"],
        "style_coefficients": style["coefficients"],
        "columns": [*COLUMNS, "interval", "preliminary"],
        "rows": listed,
        "below_min_votes": row_dicts(r for r in rows if r["below_min_votes"]),
    }


def release_body(release: Release, view: str = "default") -> dict[str, Any]:
    if view == "style":
        return style_body(release)
    rows = list(
        release.rows.order_by("position").values(*COLUMNS, "below_min_votes", "preliminary")
    )
    listed = row_dicts(r for r in rows if not r["below_min_votes"])
    columns = list(COLUMNS)
    if RatingParams.from_dict(release.params).uses_listing_columns:
        # As in the CSV: the interval method and the preliminary mark, after the core columns.
        method = interval_method(release)
        flags = [r["preliminary"] for r in rows if not r["below_min_votes"]]
        listed = [
            {**row, "interval": method, "preliminary": flag} for row, flag in zip(listed, flags)
        ]
        columns += ["interval", "preliminary"]
    return {
        **release_metadata(release),
        "columns": columns,
        "rows": listed,
        "below_min_votes": row_dicts(r for r in rows if r["below_min_votes"]),
    }


def job_body(job: PublishJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "status": job.status,
        "category": job.category,
        "force": job.force,
        "params": job.params,
        "release": job.release.number if job.release else None,
        "error_code": job.error_code,
        "message": job.message,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


@extend_schema(
    responses={200: OpenApiTypes.OBJECT, **errors(400)}, operation_id="leaderboards_list"
)
@api_view(["GET"])
def release_list(request: Request) -> Response:
    """Every release of a category, newest first (``?category=``, ``?before=`` to page)."""
    category = parse_category(request.query_params.get("category"))
    releases = Release.objects.light().defer("charts").for_category(category).order_by("-number")
    before = request.query_params.get("before")
    if before is not None:
        releases = releases.filter(number__lt=parse_release_number(before, field="before"))
    page = list(releases[: LIST_LIMIT + 1])
    body = {
        "results": [release_metadata(r, full_changes=False) for r in page[:LIST_LIMIT]],
        "next_before": page[LIST_LIMIT - 1].number if len(page) > LIST_LIMIT else None,
    }
    return Response(body)


@extend_schema(responses={200: OpenApiTypes.OBJECT, **errors(400, 404)})
@api_view(["GET"])
def release_latest(request: Request) -> Response:
    category = parse_category(request.query_params.get("category"))
    view = parse_view(request.query_params.get("view"))
    payload = "style_view" if view == "style" else None
    return Response(release_body(queries.latest_release(category, with_payload=payload), view))


@extend_schema(responses={200: OpenApiTypes.OBJECT, **errors(400, 404)})
@api_view(["GET"])
def release_detail(request: Request, number: str) -> Response:
    category = parse_category(request.query_params.get("category"))
    view = parse_view(request.query_params.get("view"))
    payload = "style_view" if view == "style" else None
    release = queries.release_by_number(number, category, with_payload=payload)
    return Response(release_body(release, view))


@extend_schema(
    request=PublishRequestSerializer,
    responses={202: OpenApiTypes.OBJECT, **errors(400, 401, 403, 409)},
)
@api_view(["POST"])
@permission_classes([IsAdminUser])
def publish(request: Request) -> Response:
    """Queue a publication; ``GET /api/leaderboards/publish/<id>`` reports its status."""
    serializer = PublishRequestSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    job = publishing.request_publish(
        category=parse_category(serializer.validated_data["category"]),
        force=serializer.validated_data["force"],
        overrides=serializer.overrides(),
        requested_by=request.user,
    )
    job.refresh_from_db()
    return Response(job_body(job), status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: OpenApiTypes.OBJECT, **errors(401, 403, 404)})
@api_view(["GET"])
@permission_classes([IsAdminUser])
def publish_status(request: Request, job_id: int) -> Response:
    job = PublishJob.objects.select_related("release").filter(pk=job_id).first()
    if job is None:
        raise UnknownPublishJob(f"no publish job with id {job_id}", fields={"job_id": job_id})
    return Response(job_body(job))
