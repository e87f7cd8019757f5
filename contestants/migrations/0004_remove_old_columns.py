# The serving and evaluation columns, copied by 0003, leave the registry table.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("contestants", "0003_copy_serving_and_results"),
    ]

    operations = [
        migrations.RemoveField(model_name="contestant", name=name)
        for name in (
            "device",
            "quantize_int8",
            "max_memory",
            "fewshot_average",
            "fewshot_std",
            "eval_cost_usd",
            "eval_energy_kwh",
            "eval_co2e_g",
        )
    ]
