# Contestant moved to the contestants app with its table unchanged: only the model state's
# foreign keys are re-pointed; the database columns and constraints stay as they are.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("submissions", "0001_initial"),
        ("contestants", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="evaluationjob",
                    name="contestant",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="jobs", to="contestants.contestant"),
                ),
                migrations.AlterField(
                    model_name="benchmarkresult",
                    name="contestant",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="benchmarks", to="contestants.contestant"),
                ),
            ],
            database_operations=[],
        ),
    ]
