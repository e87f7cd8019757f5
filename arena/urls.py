from __future__ import annotations

from django.urls import path

from arena import views

app_name = "arena"
urlpatterns = [
    path("", views.index, name="index"),
    path("<uuid:battle_id>/", views.battle, name="battle"),
    path("<uuid:battle_id>/vote", views.vote, name="vote"),
    path("<uuid:battle_id>/follow-up", views.follow_up, name="follow-up"),
]
