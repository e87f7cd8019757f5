from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.health import check_broker, check_database


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    failures = {
        name: reason
        for name, reason in (("database", check_database()), ("broker", check_broker()))
        if reason is not None
    }
    if failures:
        return JsonResponse(
            {"status": "unavailable", "failed": sorted(failures), "reasons": failures}, status=503
        )
    return JsonResponse({"status": "ok", "database": "ok", "broker": "ok", "pid": os.getpid()})


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "core/home.html")
