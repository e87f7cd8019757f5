from __future__ import annotations

from django.apps import AppConfig


class ContestantsConfig(AppConfig):
    name = "contestants"
