"""Taking upstream keys out of the pool when the provider refuses them, and back in."""

from __future__ import annotations

import logging

import httpx
from django.db import transaction
from django.utils import timezone

from gateway.models import KeyHealth, ProviderKind, UpstreamKey

logger = logging.getLogger(__name__)

PROBE_MODEL = "claude-haiku-4-5"
PROBE_TIMEOUT_S = 10.0


@transaction.atomic
def upstream_key_mark_unhealthy(*, upstream_key_id: int, reason: str) -> None:
    """Out of the pool (every process drops it at its next snapshot reload)."""
    UpstreamKey.objects.filter(pk=upstream_key_id, health=KeyHealth.HEALTHY).update(
        health=KeyHealth.UNHEALTHY, health_reason=reason[:500], health_changed_at=timezone.now()
    )


@transaction.atomic
def upstream_key_mark_healthy(*, upstream_key_id: int) -> None:
    UpstreamKey.objects.filter(pk=upstream_key_id).update(
        health=KeyHealth.HEALTHY, health_reason="", health_changed_at=timezone.now()
    )


def upstream_key_probe(upstream_key: UpstreamKey) -> bool:
    """Ask the provider whether the key works again, with a free count_tokens call."""
    provider = upstream_key.provider
    if provider.kind != ProviderKind.ANTHROPIC or not provider.is_enabled:
        return False
    try:
        response = httpx.post(
            provider.base_url.rstrip("/") + "/v1/messages/count_tokens",
            headers={
                "x-api-key": upstream_key.secret.reveal(),
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
            json={"model": PROBE_MODEL, "messages": [{"role": "user", "content": "ping"}]},
            timeout=PROBE_TIMEOUT_S,
        )
    except httpx.HTTPError as error:
        logger.info("Probe of upstream key %s failed: %s", upstream_key.pk, type(error).__name__)
        return False
    return response.status_code not in (401, 403)


def upstream_keys_probe_unhealthy() -> int:
    """Probe every unhealthy key; put back those the provider accepts. Returns how many."""
    restored = 0
    for upstream_key in UpstreamKey.objects.select_related("provider").filter(
        health=KeyHealth.UNHEALTHY, is_enabled=True
    ):
        if upstream_key_probe(upstream_key):
            upstream_key_mark_healthy(upstream_key_id=upstream_key.pk)
            restored += 1
    return restored
