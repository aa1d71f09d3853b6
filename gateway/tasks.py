"""Celery entry points of the gateway (thin; safe to run twice)."""

from __future__ import annotations

from celery import shared_task

from gateway.upstream_health import upstream_keys_probe_unhealthy


@shared_task(name="gateway.probe_unhealthy_upstream_keys")
def probe_unhealthy_upstream_keys() -> int:
    return upstream_keys_probe_unhealthy()
