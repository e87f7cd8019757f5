from __future__ import annotations

from django.contrib import admin

from arena.models import Battle, PooledAnswer, Prompt, PromptSet, Vote


@admin.register(PromptSet)
class PromptSetAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["__str__", "prompt_set", "category", "language"]
    list_filter = ["prompt_set", "category", "language"]
    search_fields = ["text"]
    readonly_fields = ["digest"]


@admin.register(PooledAnswer)
class PooledAnswerAdmin(admin.ModelAdmin):
    list_display = ["prompt", "contestant", "created_at"]
    list_filter = ["contestant"]
    readonly_fields = ["prompt", "contestant", "text", "max_new_tokens", "created_at"]


@admin.register(Battle)
class BattleAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "model_a", "model_b", "language", "category", "created_at"]
    list_filter = ["status", "pooled", "anony", "language", "category"]
    readonly_fields = [field.name for field in Battle._meta.fields]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    # Votes are data: readable here, never edited (pair counts were written with them).
    list_display = ["pk", "battle", "winner", "judge", "created_at"]
    list_filter = ["outcome__result"]
    list_select_related = ["outcome"]
    readonly_fields = [field.name for field in Vote._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
