"""Which headers cross the gateway, in each direction."""

from __future__ import annotations

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Never forwarded upstream: hop-by-hop, the client's credentials, and what httpx sets itself.
_DROP_UPSTREAM = HOP_BY_HOP | {
    "host",
    "content-length",
    "x-api-key",
    "authorization",
    "accept-encoding",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
}

# Never relayed to the client: hop-by-hop, framing we redo, and what identifies the pooled key.
_DROP_DOWNSTREAM = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "server",
    "date",
    "set-cookie",
    "anthropic-organization-id",
    "anthropic-workspace-id",
}


_DROP_UPSTREAM_NAMES = frozenset(name.encode() for name in _DROP_UPSTREAM)
_DROP_DOWNSTREAM_NAMES = frozenset(name.encode() for name in _DROP_DOWNSTREAM)


# Both run on every request over every header: names are lowered once and compared as bytes.
def upstream_headers(client_headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in client_headers
        if name.lower() not in _DROP_UPSTREAM_NAMES
    ]


def downstream_headers(upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = []
    for name, value in upstream:
        lowered = name.lower()
        if lowered not in _DROP_DOWNSTREAM_NAMES:
            kept.append((lowered, value))
    return kept
