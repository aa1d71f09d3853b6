"""How the control room and the self-service pages show money, ratios, counts and times.

Times are rendered in UTC inside a `<time datetime>` element; `gatehouse/local_time.js`
rewrites the text into the viewer's own timezone and keeps UTC in the hover title.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django import template
from django.utils.html import format_html

from accounts.formatting import format_money

register = template.Library()

EMPTY = "—"


@register.filter
def money(amount: Decimal | None, places: int = 2) -> str:
    """`$1,234.56`; `|money:4` for unit prices and single requests."""
    return format_money(amount, int(places)) or EMPTY


@register.filter
def percent(ratio: Decimal | float | None, places: int = 1) -> str:
    """A ratio between 0 and 1 as `12.5%`."""
    if ratio is None:
        return EMPTY
    return f"{Decimal(str(ratio)) * 100:.{int(places)}f}%"


@register.filter
def count(number: int | None) -> str:
    return EMPTY if number is None else f"{int(number):,}"


@register.filter
def milliseconds(value: int | None) -> str:
    return EMPTY if value is None else f"{int(value):,} ms"


@register.filter
def timestamp(moment: datetime | None) -> str:
    """A `<time>` element in UTC, localised in the browser (UTC stays in the title)."""
    if moment is None:
        return EMPTY
    utc = moment.astimezone(UTC)
    return format_html(
        '<time class="local-time" datetime="{}" title="{} UTC">{} UTC</time>',
        utc.isoformat().replace("+00:00", "Z"),
        utc.strftime("%Y-%m-%d %H:%M:%S"),
        utc.strftime("%Y-%m-%d %H:%M"),
    )
