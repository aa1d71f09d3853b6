"""The gateway's control room: write-only upstream secrets, the key pool, prices, the log."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains

from gateway.models import (
    KeyHealth,
    ModelPrice,
    Provider,
    ProviderKind,
    RequestLog,
    RequestOutcome,
    Route,
    RouteTarget,
    UpstreamKey,
)

UPSTREAM_SECRET = "sk-ant-api03-first-upstream-secret"
NEW_UPSTREAM_SECRET = "sk-ant-api03-second-upstream-secret"
UPSTREAM_KEYS = reverse("admin:gateway_upstreamkey_changelist")
ADD_UPSTREAM_KEY = reverse("admin:gateway_upstreamkey_add")
REQUEST_LOGS = reverse("admin:gateway_requestlog_changelist")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def provider(db) -> Provider:
    return Provider.objects.create(
        name="anthropic", kind=ProviderKind.ANTHROPIC, base_url="http://127.0.0.1:9"
    )


@pytest.fixture
def upstream_key(provider) -> UpstreamKey:
    return UpstreamKey.objects.create(provider=provider, label="primary", secret=UPSTREAM_SECRET)


def upstream_key_form(provider, **values) -> dict[str, object]:
    return {
        "provider": provider.pk,
        "label": "primary",
        "secret": "",
        "weight": "1",
        "is_enabled": "on",
        "_save": "Save",
        **values,
    }


def stored_secret_column(upstream_key: UpstreamKey) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT secret FROM {UpstreamKey._meta.db_table} WHERE id = %s", [upstream_key.pk]
        )
        return cursor.fetchone()[0]


def change_url(upstream_key: UpstreamKey) -> str:
    return reverse("admin:gateway_upstreamkey_change", args=[upstream_key.pk])


def test_secret_typed_into_the_add_form_is_stored_encrypted_and_round_trips(staff_client, provider):
    response = staff_client.post(
        ADD_UPSTREAM_KEY, upstream_key_form(provider, secret=f"  {UPSTREAM_SECRET}\n")
    )

    upstream_key = UpstreamKey.objects.get(provider=provider, label="primary")
    assert response.status_code == 302
    assert response.wsgi_request.sensitive_post_parameters == "__ALL__"
    assert upstream_key.secret.reveal() == UPSTREAM_SECRET
    assert stored_secret_column(upstream_key).startswith("fernet:")
    assert UPSTREAM_SECRET not in stored_secret_column(upstream_key)


def test_add_form_requires_a_secret(staff_client, provider):
    response = staff_client.post(ADD_UPSTREAM_KEY, upstream_key_form(provider))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"secret": ["This field is required."]}
    assert not UpstreamKey.objects.exists()


def test_secret_field_is_an_empty_password_input_that_browsers_do_not_autofill(
    staff_client, upstream_key
):
    response = staff_client.get(change_url(upstream_key))

    assert (
        '<input type="password" name="secret" autocomplete="new-password" '
        'aria-describedby="id_secret_helptext" id="id_secret">' in response.text
    )
    assert "Leave blank to keep the current secret." in response.text


def test_change_page_and_list_never_contain_the_secret(staff_client, upstream_key):
    pages = [
        staff_client.get(change_url(upstream_key)),
        staff_client.get(UPSTREAM_KEYS),
        staff_client.get(reverse("admin:gateway_provider_change", args=[upstream_key.provider_id])),
        staff_client.get(reverse("admin:gateway_upstreamkey_history", args=[upstream_key.pk])),
    ]

    assert [page.status_code for page in pages] == [200, 200, 200, 200]
    for page in pages:
        assert UPSTREAM_SECRET not in page.text
        assert stored_secret_column(upstream_key) not in page.text
    assert '<td class="field-secret_display">•••• set</td>' in pages[1].text


def test_blank_secret_on_change_keeps_the_stored_secret(staff_client, upstream_key):
    response = staff_client.post(
        change_url(upstream_key), upstream_key_form(upstream_key.provider, weight="3")
    )

    upstream_key.refresh_from_db()
    assert response.status_code == 302
    assert upstream_key.weight == 3
    assert upstream_key.secret.reveal() == UPSTREAM_SECRET


def test_new_secret_on_change_replaces_the_stored_secret(staff_client, upstream_key):
    staff_client.post(
        change_url(upstream_key),
        upstream_key_form(upstream_key.provider, secret=NEW_UPSTREAM_SECRET),
    )

    upstream_key.refresh_from_db()
    assert upstream_key.secret.reveal() == NEW_UPSTREAM_SECRET


def test_change_history_names_the_secret_field_but_never_its_value(staff_client, upstream_key):
    staff_client.post(
        change_url(upstream_key),
        upstream_key_form(upstream_key.provider, secret=NEW_UPSTREAM_SECRET),
    )

    response = staff_client.get(
        reverse("admin:gateway_upstreamkey_history", args=[upstream_key.pk])
    )

    assert "<td>Changed secret.</td>" in response.text
    assert NEW_UPSTREAM_SECRET not in response.text


def test_provider_page_adds_pool_keys_inline_with_write_only_secrets(staff_client):
    response = staff_client.post(
        reverse("admin:gateway_provider_add"),
        {
            "name": "bedrock-east",
            "kind": ProviderKind.BEDROCK,
            "base_url": "https://bedrock.example.test",
            "options": "{}",
            "connect_timeout_s": "10",
            "read_timeout_s": "600",
            "is_enabled": "on",
            "upstream_keys-TOTAL_FORMS": "1",
            "upstream_keys-INITIAL_FORMS": "0",
            "upstream_keys-MIN_NUM_FORMS": "0",
            "upstream_keys-MAX_NUM_FORMS": "1000",
            "upstream_keys-0-label": "east-1",
            "upstream_keys-0-secret": UPSTREAM_SECRET,
            "upstream_keys-0-weight": "2",
            "upstream_keys-0-is_enabled": "on",
            "_save": "Save",
        },
    )

    upstream_key = UpstreamKey.objects.get(provider__name="bedrock-east")
    page = staff_client.get(
        reverse("admin:gateway_provider_change", args=[upstream_key.provider_id])
    )
    assert response.status_code == 302
    assert response.wsgi_request.sensitive_post_parameters == "__ALL__"
    assert (upstream_key.label, upstream_key.weight) == ("east-1", 2)
    assert upstream_key.secret.reveal() == UPSTREAM_SECRET
    assert UPSTREAM_SECRET not in page.text


def test_health_and_its_reason_are_shown_and_mark_healthy_puts_keys_back(
    staff_client, upstream_key
):
    upstream_key.health = KeyHealth.UNHEALTHY
    upstream_key.health_reason = "authentication_error from upstream"
    upstream_key.save()

    listing = staff_client.get(UPSTREAM_KEYS)
    response = staff_client.post(
        UPSTREAM_KEYS,
        {"action": "mark_healthy", "_selected_action": [upstream_key.pk]},
        follow=True,
    )

    upstream_key.refresh_from_db()
    assert "authentication_error from upstream" in listing.text
    assert "Unhealthy (taken out of the pool)" in listing.text
    assert [str(message) for message in response.context["messages"]] == ["Marked 1 key healthy."]
    assert (upstream_key.health, upstream_key.health_reason) == (KeyHealth.HEALTHY, "")
    assert upstream_key.health_changed_at is not None
    assert upstream_key.secret.reveal() == UPSTREAM_SECRET


def test_request_log_is_view_only_without_add_or_delete(staff_client):
    log = RequestLog.objects.create(
        request_id="req_1", started_at=timezone.now(), endpoint="/v1/messages"
    )

    add = staff_client.get(reverse("admin:gateway_requestlog_add"))
    delete = staff_client.post(
        reverse("admin:gateway_requestlog_delete", args=[log.pk]), {"post": "yes"}
    )
    listing = staff_client.get(REQUEST_LOGS)
    view = staff_client.get(reverse("admin:gateway_requestlog_change", args=[log.pk]))

    assert (add.status_code, delete.status_code) == (403, 403)
    assert "delete_selected" not in listing.text
    assert reverse("admin:gateway_requestlog_add") not in listing.text
    assert view.context["title"] == "View request log"
    assert RequestLog.objects.filter(pk=log.pk).exists()


def test_request_log_list_shows_cost_in_dollars_or_unpriced(staff_client, alice, research):
    started = timezone.now()
    RequestLog.objects.create(
        request_id="req_priced",
        started_at=started,
        user=alice.user,
        cost_center=research,
        endpoint="/v1/messages",
        model_requested="claude-sonnet-4-5",
        model_served="claude-sonnet-4-5",
        status_code=200,
        input_tokens=1200,
        output_tokens=350,
        cache_read_tokens=40000,
        cost_usd=Decimal("0.01234"),
        is_priced=True,
        latency_ms=1840,
    )
    RequestLog.objects.create(
        request_id="req_unpriced",
        started_at=started - timedelta(seconds=1),
        endpoint="/v1/messages",
        model_requested="mystery-model",
        status_code=429,
        outcome=RequestOutcome.GATEWAY_ERROR,
    )

    response = staff_client.get(REQUEST_LOGS)

    assert '<td class="field-cost">$0.0123</td>' in response.text
    assert '<td class="field-cost">unpriced</td>' in response.text
    assert '<td class="field-tokens">1,200 / 350 (+40,000 cache)</td>' in response.text
    assert '<td class="field-latency">1,840 ms</td>' in response.text
    assert '<td class="field-model_display">claude-sonnet-4-5</td>' in response.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"outcome__exact": "gateway_error"}, ["req_unpriced"]),
        ({"is_stream__exact": "1"}, ["req_priced"]),
        ({"q": "req_priced"}, ["req_priced"]),
    ],
)
def test_request_log_filters_by_outcome_stream_and_request_id(staff_client, query, expected):
    now = timezone.now()
    RequestLog.objects.create(
        request_id="req_priced", started_at=now, endpoint="/v1/messages", is_stream=True
    )
    RequestLog.objects.create(
        request_id="req_unpriced",
        started_at=now,
        endpoint="/v1/messages",
        outcome=RequestOutcome.GATEWAY_ERROR,
    )

    response = staff_client.get(REQUEST_LOGS, query)

    assert [log.request_id for log in response.context["cl"].result_list] == expected


def test_price_in_force_is_read_only_and_cannot_be_deleted(staff_client, provider):
    price = ModelPrice.objects.create(
        provider=provider,
        model="claude-test-1",
        effective_from=timezone.now() - timedelta(days=1),
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cache_write_5m_per_mtok=Decimal("3.75"),
        cache_write_1h_per_mtok=Decimal("6"),
        cache_read_per_mtok=Decimal("0.3"),
    )
    url = reverse("admin:gateway_modelprice_change", args=[price.pk])

    page = staff_client.get(url)
    staff_client.post(url, {"input_per_mtok": "1", "_save": "Save"})
    delete = staff_client.post(
        reverse("admin:gateway_modelprice_delete", args=[price.pk]), {"post": "yes"}
    )

    price.refresh_from_db()
    assert 'name="input_per_mtok"' not in page.text
    assert price.input_per_mtok == Decimal("3.0000")
    assert delete.status_code == 403


def test_future_price_is_editable(staff_client, provider):
    price = ModelPrice.objects.create(
        provider=provider,
        model="claude-test-1",
        effective_from=timezone.now() + timedelta(days=30),
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cache_write_5m_per_mtok=Decimal("3.75"),
        cache_write_1h_per_mtok=Decimal("6"),
        cache_read_per_mtok=Decimal("0.3"),
    )

    page = staff_client.get(reverse("admin:gateway_modelprice_change", args=[price.pk]))

    assert 'name="input_per_mtok"' in page.text


def test_price_list_shows_unit_prices_with_four_decimals(staff_client):
    response = staff_client.get(
        reverse("admin:gateway_modelprice_changelist"), {"q": "claude-sonnet-5"}
    )

    prices = response.context["cl"].result_list
    assert len(prices) == 1
    assert f'<td class="field-input_price">${prices[0].input_per_mtok:,.4f}</td>' in response.text
    assert '<td class="field-provider_display">any provider</td>' in response.text


def test_route_page_lists_targets_in_position_order(staff_client, provider):
    fallback = Provider.objects.create(
        name="bedrock", kind=ProviderKind.BEDROCK, base_url="https://bedrock.example.test"
    )
    route = Route.objects.create(name="sonnet", model_pattern="claude-sonnet-*")
    RouteTarget.objects.create(
        route=route, position=1, provider=fallback, upstream_model="anthropic.claude-sonnet"
    )
    RouteTarget.objects.create(route=route, position=0, provider=provider)

    page = staff_client.get(reverse("admin:gateway_route_change", args=[route.pk]))
    listing = staff_client.get(reverse("admin:gateway_route_changelist"))

    [inline] = page.context["inline_admin_formsets"]
    assert [form.instance.position for form in inline.formset.initial_forms] == [0, 1]
    assertContains(
        listing,
        '<td class="field-targets_display">anthropic → bedrock:anthropic.claude-sonnet</td>',
        html=True,
    )
