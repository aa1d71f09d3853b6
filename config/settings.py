"""Gatehouse settings: one module, configured only by environment variables.

Production differs from development only by environment values; see the README's table.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import regex
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("GATEHOUSE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


DEBUG = env_bool("DEBUG")

_DEV_SECRET_KEY = "gatehouse-development-only-secret-key-do-not-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _DEV_SECRET_KEY


def _encryption_keys() -> list[str]:
    """Fernet keys for upstream secrets; the first encrypts, all decrypt (rotation)."""
    keys = env_list("GATEHOUSE_ENCRYPTION_KEY")
    if keys:
        return keys
    if not DEBUG:
        raise ImproperlyConfigured("GATEHOUSE_ENCRYPTION_KEY must be set when DEBUG is off.")
    digest = hashlib.sha256(f"gatehouse-fernet:{SECRET_KEY}".encode()).digest()
    return [base64.urlsafe_b64encode(digest).decode()]


GATEHOUSE_ENCRYPTION_KEYS = _encryption_keys()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "accounts",
    "gateway",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a sign-in refused by the lockout into the "locked out" page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    # The embedded default: a SQLite file under var/, created on first use.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'gatehouse.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN", 1),
        "max_size": env_int("DATABASE_POOL_MAX", 10),
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
        # A connection that cannot be made is given up after this long and the next query
        # starts afresh; otherwise the pool's exponential backoff would keep the gateway away
        # from a database that came back for about as long as it had been gone.
        "reconnect_timeout": env_float("DATABASE_POOL_RECONNECT_TIMEOUT", 5.0),
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Sign-in throttling (django-axes) -------------------------------------------------------
# axes' backend comes first: it refuses a locked-out sign-in before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]


def _lockout_parameters(value: str) -> list[str | list[str]]:
    """`username+ip_address,username` → [["username", "ip_address"], "username"]."""
    allowed = {"username", "ip_address", "user_agent"}
    parameters: list[str | list[str]] = []
    for item in (part.strip() for part in value.split(",") if part.strip()):
        names = [name.strip() for name in item.split("+")]
        if not set(names) <= allowed:
            raise ImproperlyConfigured(
                f"GATEHOUSE_LOGIN_LOCKOUT_BY: {item!r}; use {', '.join(sorted(allowed))}."
            )
        parameters.append(names if len(names) > 1 else names[0])
    return parameters


# Failed sign-ins allowed before a lock, and how long the lock lasts.
GATEHOUSE_LOGIN_LOCKOUT_MINUTES = env_int("GATEHOUSE_LOGIN_LOCKOUT_MINUTES", 15)
AXES_FAILURE_LIMIT = env_int("GATEHOUSE_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=GATEHOUSE_LOGIN_LOCKOUT_MINUTES)
# What failures are counted against, each on its own: one username from one address, and
# one username from anywhere (a guesser who changes address). Adding "ip_address" also locks
# an address out for every username; only sensible when client addresses are real ones.
AXES_LOCKOUT_PARAMETERS = _lockout_parameters(
    os.environ.get("GATEHOUSE_LOGIN_LOCKOUT_BY", "username+ip_address,username")
)
AXES_RESET_ON_SUCCESS = True
# The lock runs for its time from the last counted failure; attempts while locked do not
# extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.login_throttling.locked_out_response"
AXES_HTTP_RESPONSE_CODE = 429
# Reverse proxies in front of Gatehouse that append the client's address to X-Forwarded-For.
# 0: the header is ignored (a client could write anything into it).
GATEHOUSE_TRUSTED_PROXY_COUNT = env_int("GATEHOUSE_TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "accounts.login_throttling.client_ip_address"

# --- Redis, cache, channels, Celery ------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or (REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Embedded broker: a spool directory shared by the web process, the worker and beat.
    _celery_dir = VAR_DIR / "celery"
    for _folder in ("queue", "processed"):
        (_celery_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")

# --- Internationalisation, static ---------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
WHITENOISE_USE_FINDERS = DEBUG

# --- Security (production hardening; all environment-driven) ------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^v1/", r"^api/hello$", r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "gatehouse@localhost")
# With EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend. Budget alerts go out one at a
# time from one worker thread: without a timeout, one SMTP server that stops answering would
# hold every later alert (and shutdown) behind it.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0)

LOGIN_URL = "/admin/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}


# --- Gatehouse ---------------------------------------------------------------------------
MIN_LOG_RETENTION_DAYS = 90


def _log_retention_days() -> int:
    """0 (keep forever) or at least MIN_LOG_RETENTION_DAYS: a purged day must never receive
    a late row, which would make the rollups recompute it from what is left."""
    days = env_int("GATEHOUSE_LOG_RETENTION_DAYS", 400)
    if 0 < days < MIN_LOG_RETENTION_DAYS or days < 0:
        raise ImproperlyConfigured(
            f"GATEHOUSE_LOG_RETENTION_DAYS must be 0 (keep forever) or at least "
            f"{MIN_LOG_RETENTION_DAYS}."
        )
    return days


def _redact_patterns(value: str) -> tuple[str, ...]:
    patterns = tuple(line.strip() for line in value.splitlines() if line.strip())
    for pattern in patterns:
        try:
            regex.compile(pattern)  # the engine gateway.body_log redacts with
        except regex.error as error:
            raise ImproperlyConfigured(
                f"GATEHOUSE_BODY_REDACT_PATTERNS: {pattern!r} is not a regular expression ({error})."
            ) from None
    return patterns


GATEHOUSE: dict[str, Any] = {
    # Largest request body the proxy accepts (Anthropic's own limit is 32 MB).
    "MAX_BODY_BYTES": env_int("GATEHOUSE_MAX_BODY_BYTES", 32 * 1024 * 1024),
    # Seconds of upstream silence after which the gateway sends its own SSE ping.
    "PING_INTERVAL_S": env_float("GATEHOUSE_PING_INTERVAL", 15.0),
    # Longest a streamed response may run; past it the gateway ends it with an SSE error event.
    "MAX_STREAM_DURATION_S": env_float("GATEHOUSE_MAX_STREAM_DURATION_S", 600.0),
    # GET /metrics without a token for loopback clients that did not come through a proxy
    # (a management token is accepted from anywhere).
    "METRICS_LOOPBACK_OPEN": env_bool("GATEHOUSE_METRICS_LOOPBACK", True),
    # How long authenticated keys, routes and prices stay cached in each process.
    "CACHE_TTL_S": env_float("GATEHOUSE_CACHE_TTL", 5.0),
    # RequestLog batching: flush every N rows or every T seconds, whichever comes first.
    "LOG_BATCH_SIZE": env_int("GATEHOUSE_LOG_BATCH_SIZE", 200),
    "LOG_FLUSH_INTERVAL_S": env_float("GATEHOUSE_LOG_FLUSH_INTERVAL", 0.5),
    "SPOOL_DIR": Path(os.environ.get("GATEHOUSE_SPOOL_DIR", VAR_DIR / "spool")),
    # RequestLog rows older than this many days are deleted once rolled up and on finalized
    # invoices (billing/retention.py), this many per DELETE. 0 keeps them forever.
    "LOG_RETENTION_DAYS": _log_retention_days(),
    "LOG_RETENTION_BATCH_SIZE": env_int("GATEHOUSE_LOG_RETENTION_BATCH_SIZE", 5000),
    "UPSTREAM_CONNECT_TIMEOUT_S": env_float("GATEHOUSE_UPSTREAM_CONNECT_TIMEOUT", 10.0),
    "UPSTREAM_READ_TIMEOUT_S": env_float("GATEHOUSE_UPSTREAM_READ_TIMEOUT", 600.0),
    # On SIGTERM (python -m gateway.serve): how long requests in flight may still finish;
    # streams open past it end with an SSE error event.
    "SHUTDOWN_GRACE_S": env_float("GATEHOUSE_SHUTDOWN_GRACE_S", 30.0),
    # The upstream client's transport under httpx: "aiohttp" (faster under load) or "httpx".
    "UPSTREAM_TRANSPORT": os.environ.get("GATEHOUSE_UPSTREAM_TRANSPORT", "aiohttp"),
    # Prefix of every Redis key the gateway writes (several deployments can share a Redis).
    "REDIS_PREFIX": os.environ.get("GATEHOUSE_REDIS_PREFIX", "gatehouse"),
    # Seconds a Redis call may take before the gateway counts in-process instead.
    "REDIS_TIMEOUT_S": env_float("GATEHOUSE_REDIS_TIMEOUT", 0.5),
    # Prompt/response bodies of cost centers that opt in: kept up to this size each, with
    # these regular expressions (one per line) redacted on top of credentials, for this long.
    "BODY_LOG_MAX_BYTES": env_int("GATEHOUSE_BODY_LOG_MAX_BYTES", 1024 * 1024),
    "BODY_REDACT_PATTERNS": _redact_patterns(os.environ.get("GATEHOUSE_BODY_REDACT_PATTERNS", "")),
    "BODY_RETENTION_DAYS": env_int("GATEHOUSE_BODY_RETENTION_DAYS", 30),
}

# --- Billing jobs (Celery beat, UTC) ------------------------------------------------------
from celery.schedules import crontab  # noqa: E402

CELERY_BEAT_SCHEDULE = {
    "billing-rollup-usage": {"task": "billing.rollup_usage", "schedule": 300.0},
    "billing-close-month": {
        "task": "billing.close_month",
        "schedule": crontab(minute="10", hour="0", day_of_month="1"),
    },
    # RequestLog rows past GATEHOUSE_LOG_RETENTION_DAYS, once rolled up and invoiced.
    "billing-purge-request-log": {
        "task": "billing.purge_request_log",
        "schedule": crontab(minute="40", hour="3"),
    },
    # Upstream keys the provider refused are probed and put back when they work again.
    "gateway-probe-unhealthy-upstream-keys": {
        "task": "gateway.probe_unhealthy_upstream_keys",
        "schedule": 300.0,
    },
    # Logged prompt/response bodies past GATEHOUSE_BODY_RETENTION_DAYS, in bounded batches.
    "gateway-delete-expired-request-bodies": {
        "task": "gateway.delete_expired_request_bodies",
        "schedule": 3600.0,
    },
}
