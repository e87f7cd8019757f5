# Carries every contestant's serving columns into ``serving`` and its evaluation columns into a
# ContestantEvaluation row (only where one was measured), and back when reversed. Values are
# copied as stored, not re-validated: a malformed old max_memory stays visible in the admin
# instead of being dropped.

from django.db import migrations

RESULTS = ("fewshot_average", "fewshot_std", "eval_cost_usd", "eval_energy_kwh", "eval_co2e_g")
BATCH = 500


def forward(apps, schema_editor):
    Contestant = apps.get_model("contestants", "Contestant")
    Evaluation = apps.get_model("contestants", "ContestantEvaluation")
    db = schema_editor.connection.alias
    contestants = list(Contestant.objects.using(db).order_by("pk"))
    for contestant in contestants:
        contestant.serving = {
            "device": contestant.device or "auto",
            "quantize_int8": bool(contestant.quantize_int8),
            "max_memory": contestant.max_memory,
        }
    Contestant.objects.using(db).bulk_update(contestants, ["serving"], batch_size=BATCH)
    evaluations = [
        Evaluation(contestant_id=c.pk, **{name: getattr(c, name) for name in RESULTS})
        for c in contestants
        if any(getattr(c, name) is not None for name in RESULTS)
    ]
    Evaluation.objects.using(db).bulk_create(evaluations, batch_size=BATCH)


def backward(apps, schema_editor):
    Contestant = apps.get_model("contestants", "Contestant")
    Evaluation = apps.get_model("contestants", "ContestantEvaluation")
    db = schema_editor.connection.alias
    results = {e.contestant_id: e for e in Evaluation.objects.using(db).all()}
    contestants = list(Contestant.objects.using(db).order_by("pk"))
    for contestant in contestants:
        serving = contestant.serving or {}
        contestant.device = serving.get("device", "auto")
        contestant.quantize_int8 = bool(serving.get("quantize_int8", False))
        contestant.max_memory = serving.get("max_memory")
        evaluation = results.get(contestant.pk)
        for name in RESULTS:
            setattr(contestant, name, getattr(evaluation, name) if evaluation else None)
    fields = ["device", "quantize_int8", "max_memory", *RESULTS]
    Contestant.objects.using(db).bulk_update(contestants, fields, batch_size=BATCH)


class Migration(migrations.Migration):

    dependencies = [
        ("contestants", "0002_serving_and_evaluation"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
