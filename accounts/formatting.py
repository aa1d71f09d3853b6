"""How money is shown to people, in the admin and the pages of every app."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def format_money(amount: Decimal | None, places: int, currency: str = "USD") -> str | None:
    """`$3.0000` for US dollars, `EUR 3.0000` otherwise; None shows the admin's empty marker."""
    if amount is None:
        return None
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{sign}{symbol}{abs(rounded):,.{places}f}"
