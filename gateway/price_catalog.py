"""Anthropic list prices (USD per million tokens), as published on 2026-08-22.

Source: ../shared/reference/anthropic-protocol.md §8. Used by the seed migration; later
changes are new ModelPrice rows with their own effective date, never edits of these.
"""

from __future__ import annotations

from decimal import Decimal

CATALOG_EFFECTIVE_FROM = "2025-01-01T00:00:00+00:00"

# model ids -> (input, cache write 5m, cache write 1h, cache read, output)
ANTHROPIC_LIST_PRICES: dict[tuple[str, ...], tuple[str, str, str, str, str]] = {
    ("claude-fable-5",): ("10", "12.50", "20", "1.00", "50"),
    ("claude-mythos-5",): ("10", "12.50", "20", "1.00", "50"),
    ("claude-opus-5",): ("5", "6.25", "10", "0.50", "25"),
    ("claude-opus-4-8",): ("5", "6.25", "10", "0.50", "25"),
    ("claude-opus-4-7",): ("5", "6.25", "10", "0.50", "25"),
    ("claude-opus-4-6",): ("5", "6.25", "10", "0.50", "25"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5"): ("5", "6.25", "10", "0.50", "25"),
    ("claude-sonnet-5",): ("2", "2.50", "4", "0.20", "10"),
    ("claude-sonnet-4-6",): ("3", "3.75", "6", "0.30", "15"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"): ("3", "3.75", "6", "0.30", "15"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"): ("1", "1.25", "2", "0.10", "5"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"): ("15", "18.75", "30", "1.50", "75"),
    ("claude-opus-4-20250514", "claude-opus-4-0"): ("15", "18.75", "30", "1.50", "75"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4-0"): ("3", "3.75", "6", "0.30", "15"),
    ("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"): ("0.80", "1.00", "1.60", "0.08", "4"),
    ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest"): ("3", "3.75", "6", "0.30", "15"),
    ("claude-3-haiku-20240307",): ("0.25", "0.30", "0.50", "0.03", "1.25"),
    ("claude-3-opus-20240229", "claude-3-opus-latest"): ("15", "18.75", "30", "1.50", "75"),
}


# Models the reference's price table (2026-08-22) predates. Claude Code 2.1.332 defaults to
# claude-opus-5-5 and reports `total_cost_usd` from its own list prices: 12,177 5m-cache-write
# tokens + 27 output tokens = 0.061425 USD, and 12.3 K input = 0.049 USD, i.e. 4 / 20 per
# million with the standard cache multipliers. Replace with published prices when known.
DERIVED_PRICES: dict[tuple[str, ...], tuple[str, str, str, str, str]] = {
    ("claude-opus-5-5",): ("4", "5.00", "8", "0.40", "20"),
}


def catalog_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for model_ids, (inp, write_5m, write_1h, read, out) in {
        **ANTHROPIC_LIST_PRICES,
        **DERIVED_PRICES,
    }.items():
        for model_id in model_ids:
            rows.append(
                {
                    "model": model_id,
                    "input_per_mtok": Decimal(inp),
                    "cache_write_5m_per_mtok": Decimal(write_5m),
                    "cache_write_1h_per_mtok": Decimal(write_1h),
                    "cache_read_per_mtok": Decimal(read),
                    "output_per_mtok": Decimal(out),
                }
            )
    return rows
