"""Test overrides: a handful of values on top of config.settings."""

import os

os.environ.setdefault("DEBUG", "1")

from config.settings import *  # noqa: E402,F403
from config.settings import GATEHOUSE, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
SECURE_SSL_REDIRECT = False
GATEHOUSE = {**GATEHOUSE, "LOG_FLUSH_INTERVAL_S": 0.05, "SPOOL_DIR": VAR_DIR / "test-spool"}
