"""Bad routing configuration is refused when the admin saves it, with the cause named."""

import pytest
from django.core.exceptions import ValidationError

from gateway.models import KeyHealth, Provider, ProviderKind, Route, RouteTarget, UpstreamKey


@pytest.fixture
def provider(db):
    provider = Provider.objects.create(
        name="anthropic", kind=ProviderKind.ANTHROPIC, base_url="https://a.example"
    )
    UpstreamKey.objects.create(provider=provider, label="main", secret="sk-1")
    return provider


@pytest.fixture
def route(db):
    return Route.objects.create(name="default", model_pattern="claude-*")


def test_a_target_on_a_disabled_provider_is_refused(provider, route):
    provider.is_enabled = False
    provider.save()

    with pytest.raises(ValidationError) as caught:
        RouteTarget(route=route, provider=provider).full_clean()

    assert caught.value.message_dict == {"provider": ["Provider 'anthropic' is disabled."]}


def test_a_target_whose_pool_has_no_healthy_key_is_refused(provider, route):
    UpstreamKey.objects.update(health=KeyHealth.UNHEALTHY)

    with pytest.raises(ValidationError) as caught:
        RouteTarget(route=route, provider=provider).full_clean()

    assert caught.value.message_dict == {
        "provider": ["Provider 'anthropic' has no enabled, healthy upstream key."]
    }


def test_a_malformed_alias_or_pattern_is_refused(provider, route):
    with pytest.raises(ValidationError) as caught:
        RouteTarget(route=route, provider=provider, upstream_model="claude opus; drop").full_clean()
    assert list(caught.value.message_dict) == ["upstream_model"]
    with pytest.raises(ValidationError) as caught:
        Route(name="bad", model_pattern="claude *").full_clean()
    assert list(caught.value.message_dict) == ["model_pattern"]


def test_disabling_a_provider_that_enabled_routes_use_is_refused(provider, route):
    RouteTarget.objects.create(route=route, provider=provider)
    provider.is_enabled = False

    with pytest.raises(ValidationError) as caught:
        provider.full_clean()

    assert caught.value.message_dict == {
        "is_enabled": ["Enabled routes still send traffic here: default. Change them first."]
    }


def test_an_unknown_provider_kind_is_refused(db):
    with pytest.raises(ValidationError) as caught:
        Provider(name="x", kind="azure", base_url="https://x.example").full_clean()
    assert list(caught.value.message_dict) == ["kind"]
