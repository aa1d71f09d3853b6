"""Upstream secrets at rest: Fernet encryption and a value type that never prints itself."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

ENCRYPTED_MARK = "fernet:"


class Secret:
    """A secret value that shows as `********` in repr, str, logs and templates."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __str__(self) -> str:
        return "********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.GATEHOUSE_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return ENCRYPTED_MARK + fernet().encrypt(value.encode("utf-8")).decode("ascii")


def decrypt(stored: str) -> str:
    if not stored.startswith(ENCRYPTED_MARK):
        raise ValueError("Stored secret is not in the encrypted format.")
    try:
        return fernet().decrypt(stored[len(ENCRYPTED_MARK) :].encode("ascii")).decode("utf-8")
    except InvalidToken as error:
        raise ValueError(
            "Stored secret cannot be decrypted with GATEHOUSE_ENCRYPTION_KEY."
        ) from error


class EncryptedSecretField(models.TextField):
    """A text column holding a Fernet token; Python sees a `Secret`."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        if value is None:
            return None
        return Secret(decrypt(value))

    def to_python(self, value: Any) -> Secret | None:
        if value is None or isinstance(value, Secret):
            return value
        return Secret(str(value))

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        plain = value.reveal() if isinstance(value, Secret) else str(value)
        return encrypt(plain)

    def value_to_string(self, obj: Any) -> str:
        return "********"
