from __future__ import annotations

from django.contrib import admin

from leaderboard.models import Contestant, PairCount


@admin.register(Contestant)
class ContestantAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "license", "status", "device", "quantize_int8"]
    list_filter = ["status", "device"]
    search_fields = ["name", "organization"]


@admin.register(PairCount)
class PairCountAdmin(admin.ModelAdmin):
    list_display = ["model_a", "model_b", "category", "model_a_wins", "model_b_wins", "ties"]
    list_filter = ["category"]
