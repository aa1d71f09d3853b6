import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts import keys
from accounts.models import ManagementToken, TokenScope
from accounts.selectors import management_token_resolve, virtual_key_resolve
from accounts.services import management_token_issue, management_token_revoke


def raw_row(pk: int) -> tuple:
    table = connection.ops.quote_name(ManagementToken._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()


def test_raw_token_is_in_no_column_of_the_stored_row(alice):
    issued = management_token_issue(owner=alice.user, scope=TokenScope.ADMIN)

    row = raw_row(issued.token.pk)

    assert row is not None
    assert not [value for value in row if value is not None and issued.secret in str(value)]


def test_token_is_stored_as_sha256_hex_with_a_gh_mgmt_prefix(alice):
    issued = management_token_issue(owner=alice.user)

    stored = ManagementToken.objects.get(pk=issued.token.pk)

    assert stored.secret_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert stored.prefix.startswith("gh_mgmt_")
    assert len(stored.prefix) == len("gh_mgmt_") + 8
    assert issued.secret.startswith(stored.prefix)
    assert issued.secret not in repr(issued)


def test_token_resolves_to_its_row_with_its_scope(alice):
    issued = management_token_issue(owner=alice.user, scope=TokenScope.ADMIN, name="terraform")

    token = management_token_resolve(issued.secret)

    assert token is not None
    assert (token.pk, token.owner_id, token.scope, token.name) == (
        issued.token.pk,
        alice.user.pk,
        "admin",
        "terraform",
    )


def test_token_scope_defaults_to_read(alice):
    issued = management_token_issue(owner=alice.user)

    assert ManagementToken.objects.get(pk=issued.token.pk).scope == "read"


def test_unknown_scope_is_refused_and_nothing_is_stored(alice):
    with pytest.raises(
        ValueError, match=r"^Unknown scope 'superuser'; expected one of read, admin\.$"
    ):
        management_token_issue(owner=alice.user, scope="superuser")

    assert ManagementToken.objects.count() == 0


def test_right_prefix_with_a_wrong_rest_does_not_resolve(alice):
    issued = management_token_issue(owner=alice.user)
    prefix = keys.visible_prefix(issued.secret)

    assert management_token_resolve(prefix + "y" * (len(issued.secret) - len(prefix))) is None


def test_revoked_token_does_not_resolve(alice):
    issued = management_token_issue(owner=alice.user)

    management_token_revoke(token=issued.token)

    assert management_token_resolve(issued.secret) is None


def test_expired_token_does_not_resolve(alice):
    issued = management_token_issue(
        owner=alice.user, expires_at=timezone.now() + timedelta(hours=1)
    )
    assert management_token_resolve(issued.secret) is not None

    ManagementToken.objects.filter(pk=issued.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert management_token_resolve(issued.secret) is None


def test_token_of_an_inactive_owner_does_not_resolve(alice):
    issued = management_token_issue(owner=alice.user)
    alice.user.is_active = False
    alice.user.save(update_fields=["is_active"])

    assert management_token_resolve(issued.secret) is None


def test_tokens_and_virtual_keys_are_not_interchangeable(alice):
    issued = management_token_issue(owner=alice.user)

    assert management_token_resolve(alice.secret) is None
    assert virtual_key_resolve(issued.secret) is None


def test_resolving_a_token_goes_through_the_constant_time_comparison(alice, monkeypatch):
    issued = management_token_issue(owner=alice.user, scope=TokenScope.ADMIN)
    calls = []
    original = keys.secret_matches

    def spy(secret, secret_hash):
        calls.append(secret_hash)
        return original(secret, secret_hash)

    monkeypatch.setattr(keys, "secret_matches", spy)

    assert management_token_resolve(issued.secret) is not None
    assert management_token_resolve(issued.secret[:-1] + "#") is None
    assert calls == [issued.token.secret_hash, issued.token.secret_hash]
