"""`manage.py bootstrap_admin`: make sure the control room has a superuser. Safe to run twice.

Credentials come from GATEHOUSE_ADMIN_USERNAME / _EMAIL / _PASSWORD when set; a password that
came from the environment is never printed. Without one, a password is generated and printed
once, since nobody else will ever know it.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import User

DEFAULT_USERNAME = "admin"
GENERATED_PASSWORD_BYTES = 18
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104 -- hosts to replace, not to bind


def admin_url() -> str:
    """Where to sign in, as well as a command can know it without a request."""
    path = reverse("admin:index")
    if settings.DEBUG:
        host = os.environ.get("HOST", "")
        host = "127.0.0.1" if host in WILDCARD_HOSTS else host
        return f"http://{host}:{os.environ.get('PORT') or '8000'}{path}"
    named_hosts = [host.lstrip(".") for host in settings.ALLOWED_HOSTS if host != "*"]
    return f"https://{named_hosts[0]}{path}" if named_hosts else path


def framed(lines: list[str]) -> str:
    width = max(len(line) for line in lines)
    border = "+" + "-" * (width + 2) + "+"
    return "\n".join([border, *(f"| {line.ljust(width)} |" for line in lines), border])


class Command(BaseCommand):
    help = (
        "Create the first superuser if there is none: from GATEHOUSE_ADMIN_USERNAME, "
        "GATEHOUSE_ADMIN_EMAIL and GATEHOUSE_ADMIN_PASSWORD, or with a generated password "
        "printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if self.report_existing_superuser():
            return
        username = os.environ.get("GATEHOUSE_ADMIN_USERNAME") or DEFAULT_USERNAME
        email = os.environ.get("GATEHOUSE_ADMIN_EMAIL", "")
        password = os.environ.get("GATEHOUSE_ADMIN_PASSWORD", "")
        from_environment = bool(password)
        if from_environment:
            self.check_strength(password, username=username, email=email)
        else:
            password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        if User.objects.filter(username=username).exists():
            raise CommandError(
                f"A user named {username!r} exists but is not a superuser. Make them one in the "
                "admin shell, or set GATEHOUSE_ADMIN_USERNAME to another name."
            )
        try:
            with transaction.atomic():
                User.objects.create_superuser(username=username, email=email, password=password)
        except IntegrityError:
            # Another process running bootstrap_admin at the same moment created it first.
            if self.report_existing_superuser():
                return
            raise
        if from_environment:
            self.stdout.write(
                f"Created superuser {username!r} with the password from "
                f"GATEHOUSE_ADMIN_PASSWORD. Sign in at {admin_url()}"
            )
            return
        self.stdout.write(
            framed(
                [
                    "Gatehouse control room: superuser created",
                    "",
                    f"  URL       {admin_url()}",
                    f"  Username  {username}",
                    f"  Password  {password}",
                    "",
                    "This password is shown only this once. Change it after signing in.",
                ]
            )
        )

    def report_existing_superuser(self) -> bool:
        existing = User.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is None:
            return False
        self.stdout.write(f"A superuser already exists ({existing.username}); nothing to do.")
        return True

    def check_strength(self, password: str, *, username: str, email: str) -> None:
        try:
            validate_password(password, user=User(username=username, email=email))
        except ValidationError as error:
            raise CommandError(
                "GATEHOUSE_ADMIN_PASSWORD was refused: " + " ".join(error.messages)
            ) from None
