"""Celery wrappers (queue ``default``): take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from leaderboard import publishing


@shared_task(name="leaderboard.publish_if_changed")
def publish_if_changed() -> list[int]:
    """Beat entry: publish every board whose input digest changed; returns the new numbers."""
    return [release.number for release in publishing.publish_all_if_changed()]


@shared_task(name="leaderboard.run_publish_job")
def run_publish_job(job_id: int) -> str:
    """Run a staff-requested publication; safe to run twice (a finished job is left alone)."""
    return publishing.run_publish_job(job_id=job_id).status
