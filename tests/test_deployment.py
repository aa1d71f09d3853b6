"""Production packaging: docker-compose.yml, the Dockerfile, and the settings under deploy checks."""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_SERVICES = {"postgres", "redis", "web", "migrate", "worker", "beat"}
APP_SERVICES = ("web", "migrate", "worker", "beat")
REQUIRED_SECRETS = ("SECRET_KEY", "GATEHOUSE_ENCRYPTION_KEY", "POSTGRES_PASSWORD")
SETTINGS_READ = re.compile(
    r"\b(?:os\.environ\.get|os\.getenv|env_bool|env_int|env_float|env_list)"
    r'\(\s*"([A-Z][A-Z0-9_]*)"'
)


def settings_environment_names() -> set[str]:
    return set(SETTINGS_READ.findall((REPO_ROOT / "config" / "settings.py").read_text()))


def service_environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def production_environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """This process's environment without any setting, plus a production-like configuration."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in settings_environment_names() and name != "DJANGO_SETTINGS_MODULE"
    }
    return {
        **inherited,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "GATEHOUSE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "gatehouse.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gatehouse.sqlite3'}",
        "GATEHOUSE_VAR_DIR": str(tmp_path / "var"),
        **overrides,
    }


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_settings_scan_finds_the_core_variables():
    names = settings_environment_names()

    assert {
        "DEBUG",
        "SECRET_KEY",
        "GATEHOUSE_ENCRYPTION_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "LOG_LEVEL",
    } <= names


def test_compose_defines_exactly_the_production_services(compose):
    assert set(compose["services"]) == PRODUCTION_SERVICES


@pytest.mark.parametrize("name", sorted(PRODUCTION_SERVICES))
def test_every_service_has_an_image_or_a_build(compose, name):
    service = compose["services"][name]

    assert "image" in service or "build" in service


def test_postgres_and_redis_use_pinned_major_versions(compose):
    assert compose["services"]["postgres"]["image"] == "postgres:16"
    assert compose["services"]["redis"]["image"] == "redis:7"


def test_web_runs_two_daphne_replicas_with_a_healthcheck(compose):
    web = compose["services"]["web"]

    assert web["build"] == "."
    assert web["deploy"]["replicas"] == 2
    assert web["command"] == [
        "python",
        "-m",
        "gateway.serve",
        "-b",
        "0.0.0.0",
        "-p",
        "8000",
    ]
    assert web["stop_grace_period"] == "40s"  # longer than the 30 s shutdown drain
    assert web["healthcheck"]["test"][:3] == ["CMD", "python", "-c"]
    assert '"HEAD", "/api/hello"' in web["healthcheck"]["test"][3]


def test_postgres_and_redis_have_healthchecks(compose):
    postgres = compose["services"]["postgres"]["healthcheck"]["test"]
    redis = compose["services"]["redis"]["healthcheck"]["test"]

    assert postgres == ["CMD-SHELL", "pg_isready -U gatehouse -d gatehouse"]
    assert redis == ["CMD", "redis-cli", "ping"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_healthy_postgres_and_redis(compose, name):
    depends_on = compose["services"][name]["depends_on"]

    assert depends_on["postgres"] == {"condition": "service_healthy"}
    assert depends_on["redis"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_long_running_app_services_start_after_migrations(compose, name):
    depends_on = compose["services"][name]["depends_on"]

    assert depends_on["migrate"] == {"condition": "service_completed_successfully"}


def test_migrate_is_a_one_shot_migration(compose):
    migrate = compose["services"]["migrate"]

    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"


def test_worker_and_beat_run_celery_for_the_config_app(compose):
    worker = compose["services"]["worker"]["command"]
    beat = compose["services"]["beat"]["command"]

    assert worker[:4] == ["celery", "-A", "config", "worker"]
    assert beat[:4] == ["celery", "-A", "config", "beat"]


def test_beat_keeps_its_schedule_on_a_named_volume(compose):
    beat = compose["services"]["beat"]
    schedule = Path(beat["command"][beat["command"].index("--schedule") + 1])

    assert f"beat-schedule:{schedule.parent}" in beat["volumes"]


def test_named_volumes_are_declared_and_all_used(compose):
    used = {
        mount.split(":", 1)[0]
        for service in compose["services"].values()
        for mount in service.get("volumes", [])
        if not mount.startswith((".", "/", "~"))
    }

    assert (
        used
        == set(compose["volumes"])
        == {"postgres-data", "redis-data", "beat-schedule", "request-spool"}
    )
    assert "postgres-data:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_set_only_variables_that_settings_read(compose, name):
    environment = service_environment(compose["services"][name])

    assert set(environment) - settings_environment_names() == set()
    assert {"SECRET_KEY", "GATEHOUSE_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL"} <= set(
        environment
    )


def test_app_urls_point_at_the_compose_services(compose):
    environment = service_environment(compose["services"]["web"])

    assert environment["DATABASE_URL"] == (
        "postgres://gatehouse:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}@postgres:5432/gatehouse"
    )
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert environment["CELERY_BROKER_URL"] == "redis://redis:6379/1"


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
def test_required_secrets_have_no_default_and_fail_when_unset(secret):
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    references = re.findall(r"\$\{" + secret + r"(?=[:?\-}])([^}]*)\}", text)

    assert references
    assert all(modifier.startswith(":?") for modifier in references)


@pytest.mark.parametrize("secret", ["SECRET_KEY", "GATEHOUSE_ENCRYPTION_KEY"])
def test_app_services_take_secrets_from_the_operator(compose, secret):
    for name in APP_SERVICES:
        value = service_environment(compose["services"][name])[secret]

        assert re.fullmatch(r"\$\{" + secret + r":\?[^}]+\}", value)


def test_dockerfile_builds_from_python_311_slim():
    assert dockerfile_instructions()[0] == ("FROM", "python:3.11-slim")


def test_dockerfile_installs_the_lock_file_with_hashes_and_no_resolution():
    runs = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN"]

    assert "pip install --require-hashes --no-deps -r requirements/base.lock" in runs


def test_dockerfile_runs_as_a_non_root_user():
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]

    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_keeps_build_only_keys_out_of_the_image():
    instructions = dockerfile_instructions()
    persisted = " ".join(
        arguments for keyword, arguments in instructions if keyword in {"ENV", "ARG"}
    )
    collectstatic = [
        arguments for keyword, arguments in instructions if "collectstatic" in arguments
    ]

    assert "SECRET_KEY" not in persisted
    assert "GATEHOUSE_ENCRYPTION_KEY" not in persisted
    assert len(collectstatic) == 1
    assert "SECRET_KEY=" in collectstatic[0]
    assert "GATEHOUSE_ENCRYPTION_KEY=" in collectstatic[0]


def test_dockerfile_runs_daphne_through_the_entrypoint():
    instructions = dict(dockerfile_instructions())

    assert instructions["ENTRYPOINT"] == '["/app/docker/entrypoint.sh"]'
    assert instructions["CMD"] == (
        '["python", "-m", "gateway.serve", "-b", "0.0.0.0", "-p", "8000"]'
    )


def test_dockerignore_keeps_local_state_out_of_the_build():
    ignored = set((REPO_ROOT / ".dockerignore").read_text().splitlines())

    assert {".git", ".venv", ".env", "var", "staticfiles", "node_modules"} <= ignored


def test_entrypoint_runs_the_command_without_migrating_by_default(tmp_path):
    result = run(
        ["sh", "docker/entrypoint.sh", "python", "-c", "print('ready')"],
        production_environment(tmp_path),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "ready\n"
    assert not (tmp_path / "gatehouse.sqlite3").exists()


def test_entrypoint_migrates_before_the_command_when_asked(tmp_path):
    result = run(
        ["sh", "docker/entrypoint.sh", "python", "-c", "print('ready')"],
        production_environment(tmp_path, GATEHOUSE_MIGRATE="1"),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("ready\n")
    with sqlite3.connect(tmp_path / "gatehouse.sqlite3") as database:
        applied = {app for (app,) in database.execute("SELECT app FROM django_migrations")}
    assert {"accounts", "gateway", "billing"} <= applied


def test_check_deploy_passes_with_a_production_environment(tmp_path):
    environment = production_environment(tmp_path)
    assert "DEBUG" not in environment

    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        environment,
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize("secret", ["SECRET_KEY", "GATEHOUSE_ENCRYPTION_KEY"])
def test_settings_refuse_to_load_without_a_secret_when_debug_is_off(tmp_path, secret):
    environment = production_environment(tmp_path)
    del environment[secret]

    result = run([sys.executable, "-c", "import django; django.setup()"], environment)

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {secret} must be set when DEBUG is off." in result.stderr


def test_readme_configuration_table_lists_every_variable_settings_read():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.MULTILINE))

    assert settings_environment_names() <= documented
    assert documented - settings_environment_names() == {
        "GATEHOUSE_ADMIN_USERNAME",
        "GATEHOUSE_ADMIN_EMAIL",
        "GATEHOUSE_ADMIN_PASSWORD",
        "GATEHOUSE_CONFIG",
        "GATEHOUSE_SERVER",  # read by gateway.serve before Django starts
        "GATEHOUSE_WORKERS",
        "GATEHOUSE_ACCESS_LOG",  # read by gateway.serve_granian in each worker
        "HOST",
        "PORT",
    }
