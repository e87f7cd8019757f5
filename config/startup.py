"""Load settings once at process start and turn a configuration error into one clear line."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured


def load_settings_or_exit() -> None:
    """Evaluate the settings module; on a bad value print one line and exit with status 2."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - forces the lazy settings to load
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"ladder: configuration error: {exc}\n")
        raise SystemExit(2) from None
