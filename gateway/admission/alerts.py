"""Budget alerts: one e-mail when a budget's spend passes 80 % and 100 %, per period.

The proxy only works out, in memory, whether a settlement crossed a threshold — exactly one
settlement does, since the ledger serialises them. Looking up the recipient, the dedup
marker and the SMTP call run on a worker thread, never on the event loop. The marker
(`cache.add`: atomic, and shared through Redis when REDIS_URL is set) keeps a rebuilt
counter or another process that crosses the same threshold again from sending twice.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import connections

from gateway.admission.budgets import BudgetScope, reset_text, usd

logger = logging.getLogger(__name__)

# One worker: alerts go out in the order they were raised (80 % before 100 %).
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatehouse-alerts")


class BudgetAlerts:
    def __init__(self, *, prefix: str | None = None) -> None:
        self.prefix = prefix if prefix is not None else settings.GATEHOUSE["REDIS_PREFIX"]
        self._pending: set[Future[bool]] = set()
        self._lock = threading.Lock()

    def notify(self, *, scope: BudgetScope, percent: int, spent: int) -> None:
        """Queue the alert; returns at once."""
        future = _executor.submit(
            _send_in_worker, scope=scope, percent=percent, spent=spent, prefix=self.prefix
        )
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[bool]) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait(self, timeout_s: float = 10.0) -> None:
        """Block until the alerts queued so far are sent (tests, shutdown)."""
        with self._lock:
            pending = list(self._pending)
        wait_for_futures(pending, timeout=timeout_s)


def alert_marker(prefix: str, scope: BudgetScope, percent: int) -> str:
    return f"{prefix}:budget-alert:{scope.counter_id}:{percent}"


def _send_in_worker(*, scope: BudgetScope, percent: int, spent: int, prefix: str) -> bool:
    try:
        return send_budget_alert(scope=scope, percent=percent, spent=spent, prefix=prefix)
    finally:
        connections.close_all()  # this worker thread's own connections


def send_budget_alert(*, scope: BudgetScope, percent: int, spent: int, prefix: str) -> bool:
    """Send one alert unless this scope, period and threshold already had one; True if sent."""
    from gateway.selectors import budget_alert_recipient

    marker = alert_marker(prefix, scope, percent)
    keep_s = max(1, int((scope.period.counter_expires_at - datetime.now(UTC)).total_seconds()))
    claimed = False
    try:
        claimed = cache.add(marker, 1, timeout=keep_s)
        if not claimed:
            return False
        recipient = budget_alert_recipient(scope_type=scope.scope_type, scope_id=scope.scope_id)
        if not recipient:
            logger.warning("No e-mail address for the %s%% alert of %s", percent, scope.title)
            return False
        subject, body = alert_text(scope, percent, spent)
        send_mail(subject, body, None, [recipient])
        return True
    except Exception:
        logger.exception("Budget alert for %s could not be sent", scope.title)
        if claimed:
            cache.delete(marker)  # let a later crossing (another process) try again
        return False


def alert_text(scope: BudgetScope, percent: int, spent: int) -> tuple[str, str]:
    limit = scope.limit or 0
    subject = f"[Gatehouse] {scope.title}: {percent}% used"
    lines = [
        f"{scope.title} has reached {percent}% of its limit.",
        "",
        f"Spent: {usd(spent):.2f} USD of {limit:.2f} USD",
        f"Period: {scope.period.start:%Y-%m-%d} to {reset_text(scope.period)} (UTC)",
    ]
    if percent >= 100:
        lines += [
            "",
            "Requests that do not fit are refused until the budget resets at "
            f"{reset_text(scope.period)}.",
        ]
    return subject, "\n".join(lines) + "\n"
