"""A key that expires while the proxy has it cached is refused from then on, without a lookup."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import virtual_key_issue, virtual_key_rotate
from gateway.errors import GatewayError
from gateway.proxy.auth import KeyCache

pytestmark = pytest.mark.django_db(transaction=True)

LIFETIME_S = 0.5


async def test_a_cached_key_is_refused_once_it_expires(alice):
    issued = await asyncio.to_thread(
        virtual_key_issue,
        owner=alice.user,
        expires_at=timezone.now() + timedelta(seconds=LIFETIME_S),
    )
    cache = KeyCache(ttl_s=60)
    before = await cache.authenticate(issued.secret)

    await asyncio.sleep(LIFETIME_S + 0.1)

    with pytest.raises(GatewayError, match="This key has expired") as refused:
        await cache.authenticate(issued.secret)
    assert before.key_public_id == issued.virtual_key.public_id
    assert (refused.value.status, refused.value.error_type) == (401, "authentication_error")


async def test_a_cached_previous_secret_is_refused_once_its_grace_ends(alice):
    key = await asyncio.to_thread(lambda: alice.user.virtual_keys.get())
    await asyncio.to_thread(
        virtual_key_rotate, virtual_key=key, grace=timedelta(seconds=LIFETIME_S)
    )
    cache = KeyCache(ttl_s=60)
    await cache.authenticate(alice.secret)

    await asyncio.sleep(LIFETIME_S + 0.1)

    with pytest.raises(GatewayError, match="This key has expired"):
        await cache.authenticate(alice.secret)


async def test_a_key_that_never_expires_stays_accepted(alice):
    cache = KeyCache(ttl_s=60)

    contexts = [await cache.authenticate(alice.secret) for _ in range(3)]

    assert {context.expires_at for context in contexts} == {None}
    assert {context.secret_valid_until for context in contexts} == {None}
