"""Input shapes of the leaderboard API (validation only)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class PublishRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """``POST /api/leaderboards/publish``: which board, whether to force, parameter overrides."""

    category = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    force = serializers.BooleanField(required=False, default=False)
    # "elo" releases replay the ordered vote log; the others use the pair counts.
    method = serializers.ChoiceField(choices=["bt", "davidson", "elo"], required=False)
    bootstrap_rounds = serializers.IntegerField(min_value=0, max_value=100_000, required=False)
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1, required=False)
    ties = serializers.ChoiceField(choices=["half", "exclude_bothbad"], required=False)
    min_votes = serializers.IntegerField(min_value=0, required=False)
    anchor_model = serializers.CharField(max_length=100, required=False)
    anchor_rating = serializers.FloatField(required=False)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if ("anchor_model" in data) != ("anchor_rating" in data):
            missing = "anchor_rating" if "anchor_model" in data else "anchor_model"
            raise serializers.ValidationError(
                {missing: "anchor_model and anchor_rating must be given together"}
            )
        return data

    def overrides(self) -> dict[str, Any]:
        """The rating-parameter overrides, in ``RatingParams.from_dict`` form."""
        data = dict(self.validated_data)
        keys = ("method", "bootstrap_rounds", "seed", "ties", "min_votes")
        found: dict[str, Any] = {key: data[key] for key in keys if key in data}
        if "anchor_model" in data:
            found["anchor"] = {"model": data["anchor_model"], "rating": data["anchor_rating"]}
        return found
