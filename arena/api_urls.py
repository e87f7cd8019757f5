from __future__ import annotations

from django.urls import path

from arena import api

app_name = "arena-api"
urlpatterns = [
    path("session", api.session, name="session"),
    path("battles", api.battle_create, name="battle-create"),
    path("battles/<uuid:battle_id>", api.battle_detail, name="battle-detail"),
    path("battles/<uuid:battle_id>/messages", api.battle_follow_up, name="battle-follow-up"),
    path("battles/<uuid:battle_id>/vote", api.BattleVoteView.as_view(), name="battle-vote"),
    path("battles/export.jsonl", api.export, {"fmt": "jsonl"}, name="export-jsonl"),
    path("battles/export.csv", api.export, {"fmt": "csv"}, name="export-csv"),
]
