import hashlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from accounts import keys
from accounts.contracts import KeyContext
from accounts.models import VirtualKey
from accounts.selectors import virtual_key_resolve
from accounts.services import virtual_key_issue, virtual_key_revoke, virtual_key_rotate


def raw_row(model, pk: int) -> tuple:
    """The row exactly as the database holds it, bypassing every field conversion."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()


def alice_key(alice) -> VirtualKey:
    return VirtualKey.objects.get(owner=alice.user)


def test_raw_secret_is_in_no_column_of_the_stored_row(alice):
    issued = virtual_key_issue(owner=alice.user, name="ci runner")

    row = raw_row(VirtualKey, issued.virtual_key.pk)

    assert row is not None
    assert not [value for value in row if value is not None and issued.secret in str(value)]
    assert not [value for value in row if value is not None and issued.secret[16:] in str(value)]


def test_stored_hash_is_the_sha256_hex_of_the_secret(alice):
    issued = virtual_key_issue(owner=alice.user)

    stored = VirtualKey.objects.get(pk=issued.virtual_key.pk)

    assert stored.secret_hash == hashlib.sha256(issued.secret.encode()).hexdigest()


def test_prefix_is_gh_live_plus_eight_characters_of_the_secret(alice):
    issued = virtual_key_issue(owner=alice.user)

    stored = VirtualKey.objects.get(pk=issued.virtual_key.pk)

    assert stored.prefix.startswith("gh_live_")
    assert len(stored.prefix) == len("gh_live_") + 8
    assert issued.secret.startswith(stored.prefix)
    assert len(issued.secret) > len(stored.prefix) + 32


def test_issued_key_repr_does_not_show_the_secret(alice):
    issued = virtual_key_issue(owner=alice.user)

    assert issued.secret not in repr(issued)
    assert repr(issued) == f"IssuedVirtualKey({issued.virtual_key.public_id})"


def test_secret_resolves_to_the_key_with_the_owners_cost_center(alice, research):
    virtual_key = alice_key(alice)

    context = virtual_key_resolve(alice.secret)

    assert context == KeyContext(
        key_id=virtual_key.pk,
        key_public_id=virtual_key.public_id,
        key_name="alice laptop",
        user_id=alice.user.pk,
        username="alice",
        cost_center_id=research.pk,
        cost_center_code="research",
        cost_center_monthly_budget_usd=Decimal("500.00"),
    )


def test_key_context_carries_the_cost_centers_body_logging_from_the_same_query(
    alice, research, django_assert_num_queries
):
    research.log_bodies = True
    research.body_redact_patterns = "ACME-\\d{6}\n\n  INTERNAL-\\d+  \n"
    research.save()

    with django_assert_num_queries(1):
        context = virtual_key_resolve(alice.secret)

    assert context is not None
    assert (context.log_bodies, context.body_redact_patterns) == (
        True,
        (r"ACME-\d{6}", r"INTERNAL-\d+"),
    )


def test_body_logging_is_off_in_the_key_context_by_default(alice):
    context = virtual_key_resolve(alice.secret)

    assert context is not None
    assert (context.log_bodies, context.body_redact_patterns) == (False, ())


def test_key_cost_center_overrides_the_owners_default(alice, ops):
    issued = virtual_key_issue(owner=alice.user, cost_center=ops)

    context = virtual_key_resolve(issued.secret)

    assert context is not None
    assert (context.user_id, context.cost_center_id, context.cost_center_code) == (
        alice.user.pk,
        ops.pk,
        "ops",
    )


def test_right_prefix_with_a_wrong_rest_does_not_resolve(alice):
    prefix = keys.visible_prefix(alice.secret)
    wrong_rest = "x" * (len(alice.secret) - len(prefix))

    assert virtual_key_resolve(prefix + wrong_rest) is None


def test_secret_with_another_kind_prefix_does_not_resolve(alice):
    assert virtual_key_resolve("gh_mgmt_" + alice.secret[len("gh_live_") :]) is None
    assert virtual_key_resolve("") is None


def test_secret_matching_uses_a_constant_time_comparison(monkeypatch):
    calls = []
    original = keys.hmac.compare_digest

    def spy(left, right):
        calls.append((left, right))
        return original(left, right)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    secret = "gh_live_abcdefgh-rest"
    stored = hashlib.sha256(secret.encode()).hexdigest()

    assert keys.secret_matches(secret, stored) is True
    assert keys.secret_matches(secret + "x", stored) is False
    assert calls == [
        (stored, stored),
        (hashlib.sha256((secret + "x").encode()).hexdigest(), stored),
    ]


def test_resolving_a_key_goes_through_the_constant_time_comparison(alice, monkeypatch):
    calls = []
    original = keys.secret_matches

    def spy(secret, secret_hash):
        calls.append(secret_hash)
        return original(secret, secret_hash)

    monkeypatch.setattr(keys, "secret_matches", spy)

    assert virtual_key_resolve(alice.secret) is not None
    assert calls == [alice_key(alice).secret_hash]


def test_revoked_key_does_not_resolve(alice):
    virtual_key_revoke(virtual_key=alice_key(alice))

    assert virtual_key_resolve(alice.secret) is None


def test_expired_key_does_not_resolve(alice):
    VirtualKey.objects.filter(owner=alice.user).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert virtual_key_resolve(alice.secret) is None


def test_key_expiring_later_resolves_and_reports_its_expiry(alice):
    expires_at = timezone.now() + timedelta(days=3)
    issued = virtual_key_issue(owner=alice.user, expires_at=expires_at)

    context = virtual_key_resolve(issued.secret)

    assert context is not None
    assert context.expires_at == expires_at


def test_key_of_an_inactive_owner_does_not_resolve(alice):
    alice.user.is_active = False
    alice.user.save(update_fields=["is_active"])

    assert virtual_key_resolve(alice.secret) is None


def test_rotated_key_accepts_both_secrets_during_the_grace_period(alice):
    rotated = virtual_key_rotate(virtual_key=alice_key(alice), grace=timedelta(hours=1))
    grace_end = VirtualKey.objects.get(pk=rotated.virtual_key.pk).previous_secret_valid_until

    new_context = virtual_key_resolve(rotated.secret)
    old_context = virtual_key_resolve(alice.secret)

    assert rotated.secret != alice.secret
    assert new_context is not None
    assert new_context.secret_valid_until is None
    assert old_context is not None
    assert old_context.key_id == rotated.virtual_key.pk
    assert old_context.secret_valid_until == grace_end


def test_rotated_away_secret_stops_resolving_after_the_grace_period(alice):
    rotated = virtual_key_rotate(virtual_key=alice_key(alice))
    VirtualKey.objects.filter(pk=rotated.virtual_key.pk).update(
        previous_secret_valid_until=timezone.now() - timedelta(seconds=1)
    )

    assert virtual_key_resolve(alice.secret) is None
    assert virtual_key_resolve(rotated.secret) is not None


def test_rotation_keeps_no_raw_secret_either(alice):
    rotated = virtual_key_rotate(virtual_key=alice_key(alice))

    row = raw_row(VirtualKey, rotated.virtual_key.pk)

    for secret in (alice.secret, rotated.secret):
        assert not [value for value in row if value is not None and secret in str(value)]


@pytest.mark.parametrize("grace", [timedelta(0), timedelta(seconds=-5)])
def test_rotation_without_grace_drops_the_old_secret_at_once(alice, grace):
    rotated = virtual_key_rotate(virtual_key=alice_key(alice), grace=grace)

    assert virtual_key_resolve(alice.secret) is None
    assert virtual_key_resolve(rotated.secret) is not None
