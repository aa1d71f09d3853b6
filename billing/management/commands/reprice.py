"""`manage.py reprice --from 2026-05-01 --to 2026-05-31`: reprice requests of open months."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.repricing import reprice


class Command(BaseCommand):
    help = (
        "Price the requests that started between two UTC dates (both included) again with "
        "the current price catalog, then recompute their rollups and draft invoices. Months "
        "already closed (finalized invoices) are never changed. Web searches and "
        "per-iteration usage are not in the request log, so repriced rows are priced from "
        "their token columns alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="first_day", required=True, type=_date)
        parser.add_argument("--to", dest="last_day", required=True, type=_date)

    def handle(self, *args: Any, first_day: date, last_day: date, **options: Any) -> None:
        try:
            months = reprice(first_day=first_day, last_day=last_day)
        except ValueError as error:
            raise CommandError(str(error)) from error
        for month in months:
            if month.is_closed:
                self.stdout.write(f"{month.period:%Y-%m}: closed, not repriced")
            else:
                self.stdout.write(
                    f"{month.period:%Y-%m}: {month.changed} of {month.scanned} requests "
                    "repriced; drafts recomputed"
                )


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise CommandError(f"{text!r} is not a date (YYYY-MM-DD).") from error
