"""Secrets for virtual keys and management tokens: generation, hashing, comparison.

Pure functions, no ORM. A secret is `<kind prefix><random>`; we store only its SHA-256
hash and a short visible prefix (the kind prefix plus 8 characters) to find the row and to
let people recognise a key in a list without ever seeing the secret again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

VIRTUAL_KEY_PREFIX = "gh_live_"
MANAGEMENT_TOKEN_PREFIX = "gh_mgmt_"
VISIBLE_RANDOM_CHARS = 8
assert len(VIRTUAL_KEY_PREFIX) == len(MANAGEMENT_TOKEN_PREFIX)
SECRET_RANDOM_BYTES = 32


@dataclass(frozen=True, repr=False)
class IssuedSecret:
    """A freshly generated secret; the only moment the raw value exists."""

    secret: str
    prefix: str
    secret_hash: str

    def __repr__(self) -> str:
        return f"IssuedSecret(prefix={self.prefix!r})"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def visible_prefix(secret: str) -> str:
    """The part of a secret shown in lists and used as the lookup index.

    Both kind prefixes have the same length, so one slice serves both.
    """
    return secret[: len(VIRTUAL_KEY_PREFIX) + VISIBLE_RANDOM_CHARS]


def generate_secret(kind_prefix: str) -> IssuedSecret:
    secret = kind_prefix + secrets.token_urlsafe(SECRET_RANDOM_BYTES)
    return IssuedSecret(
        secret=secret, prefix=visible_prefix(secret), secret_hash=hash_secret(secret)
    )


def secret_matches(secret: str, secret_hash: str) -> bool:
    """Constant-time comparison of a presented secret against a stored hash."""
    return hmac.compare_digest(hash_secret(secret), secret_hash)


def generate_public_id(kind: str) -> str:
    """A stable, non-secret identifier (`vk_…`, `mt_…`) for logs, URLs and the API."""
    return f"{kind}_{secrets.token_hex(8)}"
