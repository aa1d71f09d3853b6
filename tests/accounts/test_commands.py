"""The key management commands: stdout carries the secret and nothing else."""

import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ManagementToken, TokenScope, User, VirtualKey
from accounts.selectors import management_token_resolve, virtual_key_resolve
from tests.live_servers import REPO, database_url_for_test_db

SECRET_LINE = re.compile(r"^gh_live_[A-Za-z0-9_-]+$")
TOKEN_LINE = re.compile(r"^gh_mgmt_[A-Za-z0-9_-]+$")
STRONG_PASSWORD = "correct-horse-battery-staple-42"


def run_command(name: str, *args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def local_run(monkeypatch, settings):
    """`make run` on a laptop: DEBUG on, the default host and port, no admin variables."""
    settings.DEBUG = True
    for name in [
        "GATEHOUSE_ADMIN_USERNAME",
        "GATEHOUSE_ADMIN_EMAIL",
        "GATEHOUSE_ADMIN_PASSWORD",
        "HOST",
        "PORT",
    ]:
        monkeypatch.delenv(name, raising=False)


def test_issue_key_prints_only_the_secret_and_it_authenticates(alice):
    stdout, stderr = run_command("issue_key", "alice")

    [secret] = stdout.splitlines()
    context = virtual_key_resolve(secret)
    assert stdout == f"{secret}\n"
    assert SECRET_LINE.match(secret)
    assert context is not None
    assert (context.username, context.cost_center_code, context.key_name) == (
        "alice",
        "research",
        "alice's key",
    )
    assert secret not in stderr


def test_issue_key_reports_what_it_issued_on_stderr(alice):
    _, stderr = run_command("issue_key", "alice", "--name", "ci runner")

    key = VirtualKey.objects.get(name="ci runner")
    assert stderr == (
        f"Issued {key.public_id} “ci runner” ({key.prefix}…) for alice, billed to research, "
        "expires never. The secret below is shown only once.\n"
    )


def test_issue_key_applies_cost_center_name_expiry_and_models(alice, ops):
    stdout, _ = run_command(
        "issue_key",
        "alice",
        "--cost-center",
        "ops",
        "--name",
        "ops batch",
        "--expires-days",
        "30",
        "--models",
        "claude-haiku-*",
        "claude-sonnet-*",
    )

    context = virtual_key_resolve(stdout.strip())
    key = VirtualKey.objects.get(name="ops batch")
    assert context is not None
    assert context.cost_center_code == "ops"
    assert context.allowed_models == ("claude-haiku-*", "claude-sonnet-*")
    assert abs(key.expires_at - key.created_at - timedelta(days=30)) < timedelta(seconds=1)


def test_issue_key_for_an_unknown_user_fails_clearly(db):
    with pytest.raises(CommandError, match=r"^No user named 'nobody'\.$"):
        run_command("issue_key", "nobody")


def test_issue_key_for_an_unknown_cost_center_fails_clearly(alice):
    with pytest.raises(CommandError, match=r"^No cost center with code 'nowhere'\.$"):
        run_command("issue_key", "alice", "--cost-center", "nowhere")

    assert VirtualKey.objects.filter(owner=alice.user).count() == 1


def test_issue_key_for_an_inactive_user_fails_clearly(alice):
    User.objects.filter(pk=alice.user.pk).update(is_active=False)

    with pytest.raises(
        CommandError,
        match=r"^User 'alice' is inactive; a key of an inactive user never authenticates\.$",
    ):
        run_command("issue_key", "alice")


def test_issue_key_refuses_zero_days(alice):
    with pytest.raises(CommandError, match="expected a whole number of days, 1 or more: '0'"):
        run_command("issue_key", "alice", "--expires-days", "0")


def test_issue_key_as_a_process_writes_only_the_secret_to_stdout(transactional_db):
    User.objects.create_user("erin", "erin@example.com", "erin-password")
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": database_url_for_test_db(),
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "issue_key", "erin"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    [secret] = result.stdout.splitlines()
    assert SECRET_LINE.match(secret)
    assert result.stdout == f"{secret}\n"
    assert virtual_key_resolve(secret) is not None


def test_create_management_token_prints_only_the_token_and_it_authenticates(alice):
    stdout, stderr = run_command(
        "create_management_token", "alice", "--scope", "admin", "--name", "terraform"
    )

    [secret] = stdout.splitlines()
    token = management_token_resolve(secret)
    assert stdout == f"{secret}\n"
    assert TOKEN_LINE.match(secret)
    assert token is not None
    assert (token.owner, token.scope, token.name) == (alice.user, TokenScope.ADMIN, "terraform")
    assert secret not in stderr


def test_create_management_token_defaults_to_read_scope(alice):
    stdout, _ = run_command("create_management_token", "alice")

    token = management_token_resolve(stdout.strip())
    assert token is not None
    assert token.scope == TokenScope.READ


def test_create_management_token_rejects_an_unknown_scope(alice):
    with pytest.raises(CommandError, match="invalid choice: 'root'"):
        run_command("create_management_token", "alice", "--scope", "root")

    assert not ManagementToken.objects.exists()


def test_create_management_token_for_an_unknown_user_fails_clearly(db):
    with pytest.raises(CommandError, match=r"^No user named 'nobody'\.$"):
        run_command("create_management_token", "nobody")


def test_bootstrap_admin_creates_admin_with_a_generated_password_shown_in_a_frame(db, local_run):
    stdout, _ = run_command("bootstrap_admin")

    password = re.search(r"^\|   Password  (\S+) +\|$", stdout, flags=re.MULTILINE).group(1)
    admin = User.objects.get(is_superuser=True)
    lines = stdout.splitlines()
    assert admin.username == "admin"
    assert (admin.is_staff, admin.check_password(password)) == (True, True)
    assert len(password) >= 20
    assert lines[0] == lines[-1] == "+" + "-" * (len(lines[1]) - 2) + "+"
    assert "|   URL       http://127.0.0.1:8000/admin/" in stdout
    assert "|   Username  admin " in stdout


def test_bootstrap_admin_is_idempotent(db, local_run):
    run_command("bootstrap_admin")

    stdout, _ = run_command("bootstrap_admin")

    assert stdout == "A superuser already exists (admin); nothing to do.\n"
    assert User.objects.filter(is_superuser=True).count() == 1


def test_bootstrap_admin_does_nothing_when_a_superuser_exists(staff, local_run):
    stdout, _ = run_command("bootstrap_admin")

    assert stdout == "A superuser already exists (root-admin); nothing to do.\n"
    assert list(User.objects.values_list("username", flat=True)) == ["root-admin"]


def test_bootstrap_admin_takes_credentials_from_the_environment_without_printing_them(
    db, local_run, monkeypatch
):
    monkeypatch.setenv("GATEHOUSE_ADMIN_USERNAME", "platform")
    monkeypatch.setenv("GATEHOUSE_ADMIN_EMAIL", "platform@example.com")
    monkeypatch.setenv("GATEHOUSE_ADMIN_PASSWORD", STRONG_PASSWORD)

    stdout, stderr = run_command("bootstrap_admin")

    admin = User.objects.get(is_superuser=True)
    assert (admin.username, admin.email, admin.check_password(STRONG_PASSWORD)) == (
        "platform",
        "platform@example.com",
        True,
    )
    assert stdout == (
        "Created superuser 'platform' with the password from GATEHOUSE_ADMIN_PASSWORD. "
        "Sign in at http://127.0.0.1:8000/admin/\n"
    )
    assert STRONG_PASSWORD not in stdout + stderr


def test_bootstrap_admin_with_only_a_username_generates_the_password(db, local_run, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ADMIN_USERNAME", "platform")

    stdout, _ = run_command("bootstrap_admin")

    password = re.search(r"^\|   Password  (\S+) +\|$", stdout, flags=re.MULTILINE).group(1)
    assert User.objects.get(username="platform").check_password(password)


def test_bootstrap_admin_refuses_a_weak_password_from_the_environment(db, local_run, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ADMIN_PASSWORD", "admin")

    with pytest.raises(CommandError, match=r"^GATEHOUSE_ADMIN_PASSWORD was refused: "):
        run_command("bootstrap_admin")

    assert not User.objects.exists()


def test_bootstrap_admin_will_not_promote_an_existing_ordinary_user(alice, local_run, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ADMIN_USERNAME", "alice")

    with pytest.raises(CommandError, match=r"^A user named 'alice' exists but is not a superuser"):
        run_command("bootstrap_admin")

    alice.user.refresh_from_db()
    assert alice.user.is_superuser is False


def test_bootstrap_admin_points_to_the_public_host_in_production(db, local_run, settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["gatehouse.example.com", "testserver"]

    stdout, _ = run_command("bootstrap_admin")

    assert "|   URL       https://gatehouse.example.com/admin/" in stdout
