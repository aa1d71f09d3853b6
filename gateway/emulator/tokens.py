"""The emulator's token estimate.

Real tokenizers are not available offline, so every count the emulator reports is
``ceil(len(canonical JSON bytes) / 4)`` per block, where the canonical JSON is the block
serialised by orjson with sorted keys and no whitespace, minus its ``cache_control``
marker (moving a marker must not change the size or identity of a block). The estimate
is deterministic, cheap, and close enough to English text (~4 bytes per token).
"""

from __future__ import annotations

from typing import Any

import orjson

BYTES_PER_TOKEN = 4


def canonical_json(block: Any) -> bytes:
    """Stable bytes for a block: sorted keys, compact, without its cache_control marker."""
    if isinstance(block, dict) and "cache_control" in block:
        block = {key: value for key, value in block.items() if key != "cache_control"}
    return orjson.dumps(block, option=orjson.OPT_SORT_KEYS)


def tokens_for_bytes(size: int) -> int:
    """Tokens for `size` bytes: ceil(size / 4), at least 1."""
    return max(1, -(-size // BYTES_PER_TOKEN))


def estimate_block_tokens(block: Any) -> int:
    return tokens_for_bytes(len(canonical_json(block)))


def estimate_text_tokens(text: str) -> int:
    """Output text is counted on its UTF-8 bytes, the same 4-bytes-per-token rule."""
    return tokens_for_bytes(len(text.encode()))
