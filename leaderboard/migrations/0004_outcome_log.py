"""The leaderboard's outcome log (filled from the arena's votes by arena 0003)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('leaderboard', '0003_contestant_moves_to_contestants'),
        ('contestants', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='release',
            name='last_vote_id',
            field=models.BigIntegerField(blank=True, help_text="Id of the newest outcome (= its vote's id) covered.", null=True),
        ),
        migrations.AlterField(
            model_name='release',
            name='vote_count',
            field=models.BigIntegerField(help_text='Outcomes in the log at publish time.'),
        ),
        migrations.CreateModel(
            name='Outcome',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('result', models.PositiveSmallIntegerField(choices=[(0, 'model_a'), (1, 'model_b'), (2, 'tie'), (3, 'tie (bothbad)')])),
                ('category', models.CharField(blank=True, default='', max_length=50)),
                ('style', models.JSONField(blank=True, help_text='{"a": {...}, "b": {...}}', null=True)),
                ('tstamp', models.FloatField(blank=True, help_text='Unix seconds.', null=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('model_a', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='contestants.contestant')),
                ('model_b', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='contestants.contestant')),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(('model_a', models.F('model_b')), _negated=True), name='outcome_of_distinct_models'), models.CheckConstraint(condition=models.Q(('result__lte', 3)), name='outcome_result_known')],
            },
        ),
    ]
