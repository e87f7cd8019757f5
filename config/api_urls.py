"""The JSON API: each app contributes its own routes under /api/."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("arena/", include("arena.api_urls")),  # first: the votes are the busiest route
    path("", include("core.api_urls")),
    path("", include("leaderboard.api_urls")),
    path("", include("submissions.api_urls")),
]
