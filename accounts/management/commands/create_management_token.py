"""`manage.py create_management_token USERNAME`: issue an API token and print only the token.

stdout carries the token and nothing else; everything meant for a human goes to stderr.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import TokenScope, User
from accounts.services import management_token_issue


class Command(BaseCommand):
    help = "Issue a management API token for a user and print it (shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--scope",
            choices=TokenScope.values,
            default=TokenScope.READ,
            help="read: look only; admin: change things too. Default: read.",
        )
        parser.add_argument("--name", default="", help="A label to recognise the token by.")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        try:
            owner = User.objects.get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if not owner.is_active:
            raise CommandError(
                f"User {username!r} is inactive; a token of an inactive user never authenticates."
            )
        issued = management_token_issue(owner=owner, scope=options["scope"], name=options["name"])
        self.stderr.write(
            f"Issued {issued.token.public_id} ({issued.token.prefix}…) for {owner.username} "
            f"with scope {issued.token.scope}. The token below is shown only once.",
            style_func=self.style.SUCCESS,
        )
        self.stdout.write(issued.secret)
