from __future__ import annotations

from django.urls import path

from leaderboard import api

urlpatterns = [
    path("leaderboards/", api.release_list, name="leaderboard-list"),
    path("leaderboards/latest", api.release_latest, name="leaderboard-latest"),
    path("leaderboards/publish", api.publish, name="leaderboard-publish"),
    path("leaderboards/publish/<int:job_id>", api.publish_status, name="leaderboard-publish-job"),
    path("leaderboards/<str:number>", api.release_detail, name="leaderboard-detail"),
]
