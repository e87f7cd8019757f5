"""The JSON API: each app contributes its own routes under /api/."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("core.api_urls")),
    path("arena/", include("arena.api_urls")),
    path("", include("leaderboard.api_urls")),
    path("", include("submissions.api_urls")),
]
