# Contestant moved to the contestants app with its table unchanged: only the model state's
# foreign keys are re-pointed; the database columns and constraints stay as they are.

import django.db.models.deletion
from django.db import migrations, models


def _contestant(on_delete, related_name):
    return models.ForeignKey(on_delete=on_delete, related_name=related_name, to="contestants.contestant")


class Migration(migrations.Migration):

    dependencies = [
        ("arena", "0001_initial"),
        ("contestants", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="battle",
                    name="model_a",
                    field=_contestant(django.db.models.deletion.PROTECT, "+"),
                ),
                migrations.AlterField(
                    model_name="battle",
                    name="model_b",
                    field=_contestant(django.db.models.deletion.PROTECT, "+"),
                ),
                migrations.AlterField(
                    model_name="pooledanswer",
                    name="contestant",
                    field=_contestant(django.db.models.deletion.CASCADE, "+"),
                ),
            ],
            database_operations=[],
        ),
    ]
