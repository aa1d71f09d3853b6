"""`manage.py apply_config FILE [--dry-run]`: upsert the configuration a YAML file describes."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.config_as_code import ConfigError, config_apply_file


class Command(BaseCommand):
    help = (
        "Create or update cost centers, users, providers (with upstream keys), routes and "
        "prices from a YAML file, in one transaction. Nothing is deleted. "
        "See docs/config-schema.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path to the YAML file, e.g. gatehouse.yaml.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Validate and print what would change without writing anything.",
        )

    def handle(self, *args: Any, file: str, dry_run: bool, **options: Any) -> None:
        try:
            plan = config_apply_file(file, dry_run=dry_run)
        except ConfigError as error:
            raise CommandError(str(error)) from error
        if options["verbosity"] < 1:
            return
        for line in plan.change_lines():
            self.stdout.write(line)
        for line in plan.summary_lines():
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("dry run: nothing was written")
