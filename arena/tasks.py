"""Celery wrappers: take ids, call one service. Both run on the "models" queue (settings)."""

from __future__ import annotations

import uuid

from celery import shared_task

from arena import services


@shared_task(name="arena.generate_answers")
def generate_answers(battle_id: str) -> None:
    services.generate_battle_answers(battle_id=uuid.UUID(battle_id))


@shared_task(name="arena.pregenerate_pool")
def pregenerate_pool(prompt_set_id: int | None = None) -> int:
    return services.pregenerate_pool(prompt_set_id=prompt_set_id)


@shared_task(name="arena.fail_stale_battles")
def fail_stale_battles() -> int:
    return len(services.fail_stale_battles())
