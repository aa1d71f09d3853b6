"""Refused upstream keys are probed against the provider and put back when they work."""

from __future__ import annotations

import pytest

from gateway.models import KeyHealth, UpstreamKey
from gateway.tasks import probe_unhealthy_upstream_keys
from gateway.upstream_health import upstream_key_mark_unhealthy
from tests.gateway.conftest import UPSTREAM_SECRET

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_key_the_provider_accepts_again_is_put_back_into_the_pool(upstream, emulator):
    upstream_key_mark_unhealthy(
        upstream_key_id=upstream.upstream_key.pk, reason="Provider answered 401"
    )

    restored = probe_unhealthy_upstream_keys()

    key = UpstreamKey.objects.get(pk=upstream.upstream_key.pk)
    assert (restored, key.health, key.health_reason) == (1, KeyHealth.HEALTHY, "")
    probe = emulator.last_request()
    assert (probe["path"], probe["headers"]["x-api-key"]) == (
        "/v1/messages/count_tokens",
        UPSTREAM_SECRET,
    )


def test_a_key_the_provider_still_refuses_stays_out(upstream, emulator):
    upstream_key_mark_unhealthy(
        upstream_key_id=upstream.upstream_key.pk, reason="Provider answered 401"
    )
    emulator.inject_fault("401", times=None, endpoint="count_tokens")

    assert probe_unhealthy_upstream_keys() == 0
    assert UpstreamKey.objects.get(pk=upstream.upstream_key.pk).health == KeyHealth.UNHEALTHY
