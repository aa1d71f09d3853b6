"""The admin home page: Django's app index with the control-room dashboard above it.

Mounted in config/urls.py at /admin/ ahead of the admin's own URLs, so it answers for
`admin:index`; it renders through `admin.site.index`, which keeps the app list, the
permission check and the templates of the stock page.
"""

from __future__ import annotations

from datetime import date

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from billing.dashboard import control_room, utc_today
from billing.periods import month_start, parse_period
from gateway.dashboard import can_view_traffic


def control_room_index(request: HttpRequest) -> HttpResponse:
    if not can_view_traffic(request.user):
        return admin.site.index(request)
    dashboard = control_room(
        period=_period(request.GET.get("month", "")),
        cost_center_id=_int_or_none(request.GET.get("cost_center", "")),
    )
    context = {
        "dashboard": dashboard,
        "chart_data": dashboard.chart_data(),
    }
    return admin.site.index(request, extra_context=context)


def _period(text: str) -> date:
    this_month = month_start(utc_today())
    try:
        period = parse_period(text) if text else this_month
    except ValueError:
        return this_month
    return min(period, this_month)


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None
