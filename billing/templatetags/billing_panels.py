"""Spend panels on the admin pages of cost centers, users and virtual keys.

Those pages belong to `accounts`, which must not import `billing` (DESIGN.md §2); their
change-form templates load these tags instead. Shown only to staff who may read traffic.
"""

from __future__ import annotations

from typing import Any

from django import template

from accounts.models import CostCenter, User, VirtualKey
from billing.dashboard import cost_center_overview, user_usage_overview, virtual_key_overview
from gateway.dashboard import can_view_traffic

register = template.Library()


def _visible(context: template.Context, obj: Any) -> bool:
    return obj is not None and obj.pk is not None and can_view_traffic(context["request"].user)


@register.inclusion_tag("admin/billing/_cost_center_panel.html", takes_context=True)
def cost_center_panel(context: template.Context, cost_center: CostCenter) -> dict[str, Any]:
    if not _visible(context, cost_center):
        return {"visible": False}
    overview = cost_center_overview(cost_center)
    return {
        "visible": True,
        "cost_center": cost_center,
        "overview": overview,
        "chart_data": overview.chart_data(),
    }


@register.inclusion_tag("admin/billing/_user_panel.html", takes_context=True)
def user_panel(context: template.Context, user: User) -> dict[str, Any]:
    if not _visible(context, user):
        return {"visible": False}
    overview = user_usage_overview(user)
    return {
        "visible": True,
        "person": user,
        "overview": overview,
        "chart_data": overview.last_30_days.chart_data(),
    }


@register.inclusion_tag("admin/billing/_virtual_key_panel.html", takes_context=True)
def virtual_key_panel(context: template.Context, virtual_key: VirtualKey) -> dict[str, Any]:
    if not _visible(context, virtual_key):
        return {"visible": False}
    overview = virtual_key_overview(virtual_key)
    return {
        "visible": True,
        "virtual_key": virtual_key,
        "overview": overview,
        "chart_data": overview.last_30_days.chart_data(),
    }
