"""Which upstream key of a provider serves a request, in the order to try them.

A session sticks to one key (the provider's prompt cache is per key/workspace), chosen by
a weighted hash of the session id; requests without a session rotate by weight.
"""

from __future__ import annotations

import hashlib
import itertools

from gateway.snapshot import UpstreamKeySpec

_rotation = itertools.count()


def _weighted_ring(keys: tuple[UpstreamKeySpec, ...]) -> list[UpstreamKeySpec]:
    ring: list[UpstreamKeySpec] = []
    for upstream_key in keys:
        ring.extend([upstream_key] * upstream_key.weight)
    return ring


def key_order(keys: tuple[UpstreamKeySpec, ...], session_id: str) -> list[UpstreamKeySpec]:
    """Every key once: the preferred key first, then the others in ring order."""
    if not keys:
        return []
    ring = _weighted_ring(keys)
    if session_id:
        start = int.from_bytes(
            hashlib.blake2b(session_id.encode(), digest_size=8).digest(), "big"
        ) % len(ring)
    else:
        start = next(_rotation) % len(ring)
    ordered: list[UpstreamKeySpec] = []
    seen: set[int] = set()
    for offset in range(len(ring)):
        upstream_key = ring[(start + offset) % len(ring)]
        if upstream_key.upstream_key_id not in seen:
            seen.add(upstream_key.upstream_key_id)
            ordered.append(upstream_key)
    return ordered
