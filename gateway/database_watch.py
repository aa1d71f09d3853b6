"""Whether the database answered a cache's last refresh, shared by the proxy's key cache and
routing snapshot: both serve what they already hold while the database is failing, let nobody
wait on it, and probe it with one refresh every DATABASE_RETRY_S until it answers."""

from __future__ import annotations

import logging
import time

from django.db import DatabaseError, InterfaceError

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (DatabaseError, InterfaceError)
# The longest a request with something cached waits for a refresh before using what it has,
# and how often the database is probed once a refresh failed.
STALE_WAIT_S = 1.0
DATABASE_RETRY_S = 2.0


class DatabaseWatch:
    def __init__(self, *, serving: str, what: str) -> None:
        self.serving = serving  # what is served meanwhile, for the warning
        self.what = what  # the refresh, for the recovery line
        self.is_down = False
        self._retry_at = 0.0

    def probe_due(self) -> bool:
        return time.monotonic() >= self._retry_at

    def failed(self, error: BaseException) -> None:
        if not self.is_down:
            logger.warning(
                "Database unavailable for %s (%s); %s until it answers again",
                self.what,
                type(error).__name__,
                self.serving,
            )
        self.is_down = True
        self._retry_at = time.monotonic() + DATABASE_RETRY_S

    def answered(self) -> None:
        if self.is_down:
            self.is_down = False
            logger.info("Database answers %s again", self.what)
