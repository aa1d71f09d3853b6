"""Test overrides: a handful of values on top of config.settings."""

import os
from pathlib import Path

os.environ.setdefault("DEBUG", "1")

from config.settings import *  # noqa: E402,F403
from config.settings import GATEHOUSE, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
SECURE_SSL_REDIRECT = False
# A spool of its own per process, unless a live-server test chose one to look into.
GATEHOUSE = {
    **GATEHOUSE,
    # A loaded test machine can stall a Redis reply past production's 0.5 s; outage tests stop
    # Redis outright (refused at once), so a longer wait costs them nothing.
    "REDIS_TIMEOUT_S": float(os.environ.get("GATEHOUSE_REDIS_TIMEOUT", "3.0")),
    "SPOOL_DIR": Path(
        os.environ.get("GATEHOUSE_SPOOL_DIR") or VAR_DIR / f"test-spool-{os.getpid()}"
    ),
}

# Live-server tests run Daphne in a subprocess against the test database, so SQLite's test
# database must be a file both processes can open (not the default in-memory one).
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # One file per test run, so concurrent runs never share (and corrupt) a database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-gatehouse-{os.getpid()}.sqlite3")}  # noqa: F405
