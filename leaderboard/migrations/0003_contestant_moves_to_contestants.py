# Contestant moved to the contestants app with its table unchanged (see contestants 0001): the
# pair counts' foreign keys are re-pointed and the model leaves this app's state; nothing in the
# database changes.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0002_releases"),
        ("contestants", "0001_initial"),
        # Every foreign key to the old model state is re-pointed before it is removed.
        ("arena", "0002_contestant_moves_to_contestants"),
        ("submissions", "0002_contestant_moves_to_contestants"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="paircount",
                    name="model_a",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="contestants.contestant"),
                ),
                migrations.AlterField(
                    model_name="paircount",
                    name="model_b",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="contestants.contestant"),
                ),
                migrations.DeleteModel(name="Contestant"),
            ],
            database_operations=[],
        ),
    ]
