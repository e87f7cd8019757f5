from __future__ import annotations

from django.urls import path

from submissions import api

urlpatterns = [
    path("models", api.ModelListView.as_view(), name="submissions-model-list"),
    path("models/<str:name>", api.ModelDetailView.as_view(), name="submissions-model-detail"),
    path(
        "models/<str:name>/cancel", api.ModelCancelView.as_view(), name="submissions-model-cancel"
    ),
    path(
        "models/<str:name>/results",
        api.ModelResultsView.as_view(),
        name="submissions-model-results",
    ),
    path("jobs/<int:job_id>", api.JobDetailView.as_view(), name="submissions-job-detail"),
]
