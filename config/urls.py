"""Top-level URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

# JSON error bodies under /api/, Django's pages elsewhere (core.middleware).
handler400 = "core.middleware.bad_request"
handler403 = "core.middleware.permission_denied"
handler404 = "core.middleware.page_not_found"
handler500 = "core.middleware.server_error"

# The resolver tries patterns in order: the API, which takes the arena's votes, comes first.
urlpatterns = [
    path("api/", include("config.api_urls")),
    path("", include("core.urls")),
    path("", include("submissions.urls")),
    path("arena/", include("arena.urls")),
    path("leaderboard/", include("leaderboard.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
