"""Everything under ``/api/`` answers the project's JSON error body, whatever fails.

DRF views answer their own errors (``core.exceptions.api_exception_handler``); this module
covers what happens outside them: the URL resolver's 404, Django's 400 for a body over
``DATA_UPLOAD_MAX_MEMORY_SIZE``, the CSRF 403, an uncaught exception (a database or broker
outage answers 503, anything else 500), and a NUL in the path, which no route can hold and
which PostgreSQL would refuse in a lookup. Pages outside ``/api/`` keep Django's HTML views.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from django import db
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import csrf, defaults

from core.exceptions import error_body
from core.text import has_unstorable

API_PREFIX = "/api/"
# A status that reaches the middleware without a JSON body gets this code.
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    500: "internal_error",
    503: "service_unavailable",
}
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (db.OperationalError, db.InterfaceError)


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def api_error(status: int, message: str, code: str | None = None) -> JsonResponse:
    return JsonResponse(
        error_body(code or STATUS_CODES.get(status, "error"), message), status=status
    )


class ApiErrorMiddleware:
    """Outermost: refuses NUL paths and gives any non-JSON API error the JSON body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if has_unstorable(request.path):
            if is_api(request):
                return api_error(404, "no API endpoint or object has a NUL in its path")
            raise Http404("a path cannot hold a NUL")
        if any(has_unstorable(key + value) for key, value in request.GET.items()):
            message = "a query parameter holds a NUL or a lone surrogate"
            if is_api(request):
                return api_error(400, message, "invalid_input")
            return HttpResponse(message, status=400, content_type="text/plain")
        response = self.get_response(request)
        if is_api(request) and response.status_code >= 400 and not _is_json(response):
            return api_error(response.status_code, _message_for(request, response.status_code))
        return response


def _is_json(response: HttpResponse) -> bool:
    return str(response.get("Content-Type", "")).startswith("application/json")


def _message_for(request: HttpRequest, status: int) -> str:
    if status == 404:
        return f"no API endpoint or object at {request.path}"
    if status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return f"the request to {request.path} failed with status {status}"


# --- Error views (config/urls.py names them; Django calls them when DEBUG is false) ---------


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api(request):
        return defaults.bad_request(request, exception or SuspiciousOperation())
    if isinstance(exception, RequestDataTooBig):
        return api_error(413, "the request body is larger than the server accepts")
    return api_error(400, f"bad request: {exception or 'unreadable'}")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api(request):
        return defaults.permission_denied(request, exception or Exception())
    return api_error(403, str(exception) or "permission denied")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api(request):
        return defaults.page_not_found(request, exception or Http404())
    return api_error(404, _message_for(request, 404))


def server_error(request: HttpRequest) -> HttpResponse:
    """500, or 503 with a code while the database is unreachable (Django logged the error)."""
    error = sys.exc_info()[1]
    if isinstance(error, OUTAGE_ERRORS):
        if is_api(request):
            return api_error(
                503, "the database is unavailable; please retry shortly", "database_unavailable"
            )
        return HttpResponse(
            "The service is unavailable; please retry shortly.",
            status=503,
            content_type="text/plain",
        )
    if not is_api(request):
        return defaults.server_error(request)
    return api_error(500, "an internal error occurred; it has been logged")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if not is_api(request):
        return csrf.csrf_failure(request, reason)
    return api_error(403, f"CSRF verification failed: {reason}", "csrf_failed")
