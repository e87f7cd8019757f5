"""HTML pages and CSV downloads: parse → one query/page function → respond."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.exceptions import DomainError, error_body
from leaderboard import pages, queries
from leaderboard.exceptions import UnknownRelease, parse_category, parse_view, style_view_of
from leaderboard.models import PublishJob, Release

View = Callable[..., HttpResponse]


def html_errors(view: View) -> View:
    """Domain errors become an error page with the same status and code."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DomainError as error:
            context = {"code": error.code, "message": error.message}
            return render(request, "leaderboard/error.html", context, status=error.status_code)

    return wrapped


def download_errors(view: View) -> View:
    """Downloads answer errors in the API's JSON error body."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DomainError as error:
            body = error_body(error.code, error.message, error.fields)
            return JsonResponse(body, status=error.status_code)

    return wrapped


def _sort(request: HttpRequest) -> tuple[str, bool]:
    return request.GET.get("sort", "rank"), request.GET.get("dir") == "desc"


@require_GET
@html_errors
def index(request: HttpRequest) -> HttpResponse:
    category = parse_category(request.GET.get("category"))
    try:
        release = queries.latest_release(category)
    except UnknownRelease:
        context = {"category": category, **queries.board_before_first_release(category)}
        return render(request, "leaderboard/empty.html", context)
    sort, descending = _sort(request)
    view = parse_view(request.GET.get("view"))
    context = pages.release_context(release, sort=sort, descending=descending, view=view)
    return render(request, "leaderboard/release.html", {**context, "is_latest": True})


@require_GET
@html_errors
def release_detail(request: HttpRequest, number: str) -> HttpResponse:
    category = parse_category(request.GET.get("category"))
    release = queries.release_by_number(number, category)
    sort, descending = _sort(request)
    view = parse_view(request.GET.get("view"))
    context = pages.release_context(release, sort=sort, descending=descending, view=view)
    return render(request, "leaderboard/release.html", context)


@require_GET
@html_errors
def release_list(request: HttpRequest) -> HttpResponse:
    category = parse_category(request.GET.get("category"))
    releases = Release.objects.light().defer("charts").for_category(category).order_by("-number")
    page = Paginator(releases, 50).get_page(request.GET.get("page"))
    for release in page.object_list:
        release.summary = pages.change_summary(release.changes)  # type: ignore[attr-defined]
    context = {
        "page": page,
        "category": category,
        "jobs": PublishJob.objects.select_related("release")[:5],
    }
    return render(request, "leaderboard/release_list.html", context)


@require_GET
@html_errors
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    category = parse_category(request.GET.get("category"))
    history = queries.model_history(name, category)
    latest = queries.release_by_number(
        str(history[-1]["release__number"]), category, with_payload="input_counts"
    )
    return render(request, "leaderboard/model.html", pages.model_context(name, history, latest))


def _csv_response(release: Release, view: str = "default") -> HttpResponse:
    text, filename = release.csv_text, release.csv_filename
    if view == "style":
        text = style_view_of(release)["csv_text"]
        filename = filename.replace(".csv", "-style.csv")
    response = HttpResponse(text.encode("utf-8"), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Ladder-Release"] = str(release.number)
    response["X-Ladder-View"] = view
    return response


def _csv_payload(view: str) -> str:
    return "style_view" if view == "style" else "csv_text"


@require_GET
@download_errors
def latest_csv(request: HttpRequest) -> HttpResponse:
    category = parse_category(request.GET.get("category"))
    view = parse_view(request.GET.get("view"))
    return _csv_response(queries.latest_release(category, with_payload=_csv_payload(view)), view)


@require_GET
@download_errors
def release_csv(request: HttpRequest, number: str) -> HttpResponse:
    category = parse_category(request.GET.get("category"))
    view = parse_view(request.GET.get("view"))
    release = queries.release_by_number(number, category, with_payload=_csv_payload(view))
    return _csv_response(release, view)
