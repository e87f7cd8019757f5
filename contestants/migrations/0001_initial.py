# The contestant registry moves here from the leaderboard app. Its table keeps its name
# (leaderboard_contestant), so this migration changes only Django's model state; the data stays
# where it is, and every foreign key to the table keeps working.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def rename_content_type(apps, schema_editor):
    _move_content_type(apps, "leaderboard", "contestants")


def restore_content_type(apps, schema_editor):
    _move_content_type(apps, "contestants", "leaderboard")


def _move_content_type(apps, old, new):
    # Admin log entries and permissions follow the model to its new app.
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = ContentType.objects.db_manager()
    if not db.filter(app_label=new, model="contestant").exists():
        db.filter(app_label=old, model="contestant").update(app_label=new)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("leaderboard", "0002_releases"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Contestant",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=100, unique=True)),
                        ("organization", models.CharField(blank=True, max_length=200)),
                        ("license", models.CharField(blank=True, max_length=100)),
                        ("description", models.TextField(blank=True)),
                        ("checkpoint_path", models.CharField(help_text="Local checkpoint directory.", max_length=1000)),
                        ("device", models.CharField(choices=[("auto", "Auto"), ("cpu", "Cpu"), ("cuda", "Cuda")], default="auto", max_length=10)),
                        ("quantize_int8", models.BooleanField(default=False)),
                        ("max_memory", models.JSONField(blank=True, help_text='e.g. {"cuda": "2GiB"}', null=True)),
                        ("status", models.CharField(choices=[("pending", "Pending"), ("active", "Active"), ("retired", "Retired"), ("failed", "Failed")], default="pending", max_length=10)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("parameters", models.BigIntegerField(blank=True, null=True)),
                        ("training_tokens", models.BigIntegerField(blank=True, null=True)),
                        ("weights_digest", models.CharField(blank=True, max_length=64)),
                        ("model_card", models.JSONField(blank=True, default=dict)),
                        ("fewshot_average", models.FloatField(blank=True, null=True)),
                        ("fewshot_std", models.FloatField(blank=True, null=True)),
                        ("eval_cost_usd", models.FloatField(blank=True, null=True)),
                        ("eval_energy_kwh", models.FloatField(blank=True, null=True)),
                        ("eval_co2e_g", models.FloatField(blank=True, null=True)),
                        ("owner", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "db_table": "leaderboard_contestant",
                        "ordering": ["name"],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_content_type, restore_content_type),
    ]
