"""Celery entry points of the gateway (thin; safe to run twice)."""

from __future__ import annotations

from celery import shared_task

from gateway.services import request_bodies_delete_expired
from gateway.upstream_health import upstream_keys_probe_unhealthy


@shared_task(name="gateway.probe_unhealthy_upstream_keys")
def probe_unhealthy_upstream_keys() -> int:
    return upstream_keys_probe_unhealthy()


@shared_task(name="gateway.delete_expired_request_bodies")
def delete_expired_request_bodies() -> int:
    return request_bodies_delete_expired()
