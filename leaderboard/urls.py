from __future__ import annotations

from django.urls import path

from leaderboard import views

app_name = "leaderboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("latest.csv", views.latest_csv, name="latest-csv"),
    path("releases/", views.release_list, name="releases"),
    path("releases/<str:number>.csv", views.release_csv, name="release-csv"),
    path("releases/<str:number>/", views.release_detail, name="release"),
    path("models/<path:name>/", views.model_detail, name="model"),
]
