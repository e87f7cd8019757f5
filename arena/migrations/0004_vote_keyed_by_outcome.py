"""A vote's primary key is its outcome (0003 gave every vote the outcome with its id); the
winner and the times live on the outcome only.

Backwards, the votes get a fresh ``id`` column again (new numbers) and 0003 copies each vote's
winner and times back from its outcome.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def drop_outcome_primary_key(apps: Any, schema_editor: Any) -> None:
    """Backwards on PostgreSQL: the outcome link stops being the primary key before it may be
    NULL again (Django's AlterField does not drop the constraint itself)."""
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite remakes the table
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'arena_vote'::regclass AND contype = 'p'"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE arena_vote DROP CONSTRAINT "{name}"')


class Migration(migrations.Migration):
    dependencies = [
        ("arena", "0003_vote_outcome"),
    ]

    operations = [
        migrations.RemoveField(model_name="vote", name="id"),
        migrations.AlterField(
            model_name="vote",
            name="outcome",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT,
                primary_key=True,
                related_name="+",
                serialize=False,
                to="leaderboard.outcome",
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, drop_outcome_primary_key),
        migrations.RemoveField(model_name="vote", name="created_at"),
        migrations.RemoveField(model_name="vote", name="tstamp"),
        migrations.RemoveField(model_name="vote", name="winner"),
    ]
