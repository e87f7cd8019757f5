"""HTML pages; include with ``path("", include("submissions.urls"))`` in config/urls.py."""

from __future__ import annotations

from django.urls import path

from submissions import views

app_name = "submissions"
urlpatterns = [
    path("models/<str:name>/", views.model_detail, name="model-detail"),
    path("analysis/", views.analysis_page, name="analysis"),
]
