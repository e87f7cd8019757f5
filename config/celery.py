"""The Celery app. Configuration lives in Django settings under the ``CELERY_`` namespace."""

from __future__ import annotations

import os
import sys

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

if os.path.basename(sys.argv[0]).startswith("celery"):
    # Started as `celery -A config ...`: a bad setting gives one line, not a traceback.
    from config.startup import load_settings_or_exit

    load_settings_or_exit()
    # Before torch loads OpenMP: idle intra-op threads sleep instead of spinning. With more
    # than one thread (LADDER_WORKER_TORCH_THREADS) on shared cores, spinning threads took the
    # core from the one computing: chat decoding fell to 0.50x transformers' speed, 1.68x with
    # PASSIVE (bench/RESULTS.md, issue 15). An explicit setting is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = Celery("ladder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
