"""Mutual exclusion for billing jobs that may run twice at once (two workers, beat + admin).

PostgreSQL: transaction-scoped advisory locks, released at commit or rollback.
SQLite: nothing to take. Settings open every transaction with BEGIN IMMEDIATE
(`transaction_mode`), which takes the database's single write lock up front, so two billing
transactions never interleave there: the second waits (up to the busy timeout) for the first.
"""

from __future__ import annotations

import enum
from datetime import date

from django.db import connection


class LockScope(enum.IntEnum):
    """The first key of a PostgreSQL advisory lock (the second names the day or month)."""

    ROLLUP_DAY = 0x6268_0001
    PERIOD = 0x6268_0002
    MONTH_CLOSE = 0x6268_0003
    EXPORT = 0x6268_0004


def hold(scope: LockScope, key: int = 0) -> None:
    """Block until this transaction holds the lock (scope, key); held until it ends."""
    if not connection.in_atomic_block:
        raise RuntimeError("Billing locks are held by a transaction; open one first.")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [int(scope), key])


def day_key(day: date) -> int:
    return day.toordinal()


def period_key(period: date) -> int:
    return period.year * 100 + period.month
