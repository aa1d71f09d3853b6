"""Panels about traffic that pages of other apps include: a developer's own usage and
budgets on the self-service page, an upstream key's health on its admin page.

They are template tags so that the templates compose them and `accounts` never imports
`gateway` (DESIGN.md §2).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from gateway import reports
from gateway.dashboard import can_view_traffic, upstream_key_activity
from gateway.models import KeyHealth, UpstreamKey

register = template.Library()


@register.inclusion_tag("accounts/_usage_panel.html")
def developer_usage(user: Any) -> dict[str, Any]:
    """The signed-in person's usage this month and every budget their requests count against."""
    overview = reports.user_overview(user)
    budgets = [
        status
        for status in overview.budgets
        if status.month.budget_usd is not None
        or (status.day is not None and status.day.budget_usd is not None)
    ]
    return {"overview": overview, "usage": overview.usage_this_month, "budgets": budgets}


@register.inclusion_tag("admin/gateway/_upstream_key_panel.html", takes_context=True)
def upstream_key_panel(context: template.Context, upstream_key: UpstreamKey) -> dict[str, Any]:
    if upstream_key is None or not can_view_traffic(context["request"].user):
        return {"visible": False}
    return {
        "visible": True,
        "upstream_key": upstream_key,
        "is_healthy": upstream_key.health == KeyHealth.HEALTHY,
        "activity": upstream_key_activity(upstream_key, now=timezone.now()),
    }
