import pytest
from cryptography.fernet import Fernet
from django.core import serializers
from django.db import connection

from gateway.models import Provider, ProviderKind, UpstreamKey
from gateway.secrets import Secret, _fernet

PLAINTEXT = "sk-ant-api03-plaintext-upstream-key-0042"


@pytest.fixture
def upstream_key(db) -> UpstreamKey:
    provider = Provider.objects.create(
        name="anthropic", kind=ProviderKind.ANTHROPIC, base_url="https://127.0.0.1/anthropic"
    )
    return UpstreamKey.objects.create(provider=provider, label="team-a", secret=PLAINTEXT)


@pytest.fixture
def fresh_fernet_cache():
    _fernet.cache_clear()
    yield
    _fernet.cache_clear()


def raw_secret_column(pk: int) -> str:
    table = connection.ops.quote_name(UpstreamKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def write_raw_secret_column(pk: int, value: str) -> None:
    table = connection.ops.quote_name(UpstreamKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET secret = %s WHERE id = %s", [value, pk])


def test_secret_is_stored_encrypted_with_a_fernet_mark(upstream_key):
    stored = raw_secret_column(upstream_key.pk)

    assert stored.startswith("fernet:")
    assert PLAINTEXT not in stored
    assert PLAINTEXT[len("sk-ant-api03-") :] not in stored


def test_reading_back_gives_a_secret_that_reveals_the_plaintext(upstream_key):
    loaded = UpstreamKey.objects.get(pk=upstream_key.pk)

    assert isinstance(loaded.secret, Secret)
    assert loaded.secret.reveal() == PLAINTEXT


def test_secret_does_not_show_itself_in_repr_or_str(upstream_key):
    loaded = UpstreamKey.objects.get(pk=upstream_key.pk)

    assert repr(loaded.secret) == "Secret('********')"
    assert str(loaded.secret) == "********"
    assert f"{loaded.secret}" == "********"
    assert PLAINTEXT not in repr(loaded.__dict__)


def test_serialized_key_shows_a_mask_instead_of_the_secret(upstream_key):
    loaded = UpstreamKey.objects.get(pk=upstream_key.pk)

    dumped = serializers.serialize("json", [loaded])

    assert PLAINTEXT not in dumped
    assert '"secret": "********"' in dumped


def test_saving_again_keeps_the_same_plaintext(upstream_key):
    loaded = UpstreamKey.objects.get(pk=upstream_key.pk)
    loaded.label = "team-b"
    loaded.save()

    assert UpstreamKey.objects.get(pk=upstream_key.pk).secret.reveal() == PLAINTEXT
    assert raw_secret_column(upstream_key.pk).startswith("fernet:")


def test_wrong_encryption_key_raises_a_clear_error(upstream_key, settings, fresh_fernet_cache):
    settings.GATEHOUSE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(
        ValueError, match=r"^Stored secret cannot be decrypted with GATEHOUSE_ENCRYPTION_KEY\.$"
    ):
        UpstreamKey.objects.get(pk=upstream_key.pk)


def test_old_key_listed_after_a_new_one_still_decrypts(upstream_key, settings, fresh_fernet_cache):
    settings.GATEHOUSE_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.GATEHOUSE_ENCRYPTION_KEYS,
    ]

    assert UpstreamKey.objects.get(pk=upstream_key.pk).secret.reveal() == PLAINTEXT


def test_a_plaintext_value_in_the_column_is_refused(upstream_key):
    write_raw_secret_column(upstream_key.pk, PLAINTEXT)

    with pytest.raises(ValueError, match=r"^Stored secret is not in the encrypted format\.$"):
        UpstreamKey.objects.get(pk=upstream_key.pk)
