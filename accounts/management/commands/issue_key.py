"""`manage.py issue_key USERNAME`: issue a virtual key and print only its secret.

stdout carries the secret and nothing else, so `KEY=$(manage.py issue_key alice)` works;
everything meant for a human goes to stderr.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import CostCenter, User
from accounts.services import virtual_key_issue


def whole_days(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, 1 or more: {value!r}")
    return int(value)


class Command(BaseCommand):
    help = "Issue a virtual key for a user and print its secret (shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--cost-center",
            metavar="CODE",
            help="Bill this key to a cost center other than the user's default.",
        )
        parser.add_argument("--name", default="", help='Default: "<username>\'s key".')
        parser.add_argument(
            "--expires-days",
            type=whole_days,
            metavar="N",
            help="The key stops working N days from now. Default: never.",
        )
        parser.add_argument(
            "--models",
            nargs="+",
            default=[],
            metavar="PATTERN",
            help='Glob patterns of models the key may use, e.g. "claude-sonnet-*". Default: all.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        owner = self.find_user(options["username"])
        cost_center = self.find_cost_center(options["cost_center"])
        expires_at = None
        if options["expires_days"] is not None:
            expires_at = timezone.now() + timedelta(days=options["expires_days"])
        issued = virtual_key_issue(
            owner=owner,
            name=options["name"],
            cost_center=cost_center,
            expires_at=expires_at,
            allowed_models=options["models"],
        )
        virtual_key = issued.virtual_key
        billed_to = virtual_key.effective_cost_center
        self.stderr.write(
            f"Issued {virtual_key.public_id} “{virtual_key.name}” ({virtual_key.prefix}…) for "
            f"{owner.username}, billed to {billed_to.code if billed_to else 'no cost center'}, "
            f"expires {expires_at.isoformat() if expires_at else 'never'}. "
            "The secret below is shown only once.",
            style_func=self.style.SUCCESS,
        )
        self.stdout.write(issued.secret)

    def find_user(self, username: str) -> User:
        try:
            owner = User.objects.select_related("default_cost_center").get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if not owner.is_active:
            raise CommandError(
                f"User {username!r} is inactive; a key of an inactive user never authenticates."
            )
        return owner

    def find_cost_center(self, code: str | None) -> CostCenter | None:
        if code is None:
            return None
        try:
            cost_center = CostCenter.objects.get(code=code)
        except CostCenter.DoesNotExist:
            raise CommandError(f"No cost center with code {code!r}.") from None
        if not cost_center.is_active:
            raise CommandError(f"Cost center {code!r} is inactive.")
        return cost_center
