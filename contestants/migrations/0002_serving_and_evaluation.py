# Serving options become one validated JSON field, and evaluation results get their own table.
# 0003 copies the old columns over, 0004 drops them.

import contestants.options
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("contestants", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="contestant",
            name="serving",
            field=models.JSONField(default=contestants.options.default_serving, help_text='{"device": "auto|cpu|cuda[:N]", "quantize_int8": false, "max_memory": null or {"cuda": "2GiB"}}', validators=[contestants.options.validate_serving]),
        ),
        migrations.CreateModel(
            name="ContestantEvaluation",
            fields=[
                ("contestant", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name="evaluation", serialize=False, to="contestants.contestant")),
                ("fewshot_average", models.FloatField(blank=True, null=True)),
                ("fewshot_std", models.FloatField(blank=True, null=True)),
                ("eval_cost_usd", models.FloatField(blank=True, null=True)),
                ("eval_energy_kwh", models.FloatField(blank=True, null=True)),
                ("eval_co2e_g", models.FloatField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
        ),
    ]
