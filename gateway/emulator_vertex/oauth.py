"""Google's OAuth2 token endpoint for service accounts (the JWT-bearer grant), emulated.

A service account posts `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`;
the JWT is RS256-signed with the account's private key and claims `iss` (the account's
email), `scope`, `aud` (this endpoint), `iat` and `exp`. The emulator knows the public keys
of the accounts registered with it and answers `{"access_token", "expires_in",
"token_type": "Bearer"}` — or Google's `{"error": "invalid_grant", ...}` with a 400.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# google-auth always addresses its assertions to Google's endpoint, whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
MAX_ASSERTION_LIFETIME_S = 3600
CLOCK_SKEW_S = 300


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    project_id: str
    public_key: rsa.RSAPublicKey
    private_key_id: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    client_email: str
    project_id: str
    expires_at: float


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    def body(self) -> bytes:
        return orjson.dumps({"error": self.error, "error_description": self.description})


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("public_key_pem: expected an RSA public key")
    return key


def _segment(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_assertion(
    assertion: str, *, accounts: dict[str, ServiceAccount], audience: str, now: float
) -> ServiceAccount:
    """The account that signed `assertion`, or OAuthError in Google's words."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion.")
    try:
        header, claims = orjson.loads(_segment(parts[0])), orjson.loads(_segment(parts[1]))
        signature = _segment(parts[2])
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise OAuthError("invalid_grant", "Invalid JWT: malformed assertion.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        raise OAuthError("invalid_grant", "Invalid JWT: expected an RS256 assertion.")
    account = accounts.get(str(claims.get("iss", "")))
    if account is None or (account.private_key_id and header.get("kid") != account.private_key_id):
        raise OAuthError("invalid_grant", "Invalid JWT Signature.")
    try:
        account.public_key.verify(
            signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise OAuthError("invalid_grant", "Invalid JWT Signature.") from None
    _check_claims(claims, audience=audience, now=now)
    return account


def _check_claims(claims: dict[str, Any], *, audience: str, now: float) -> None:
    if claims.get("aud") not in (audience, GOOGLE_TOKEN_AUDIENCE):
        raise OAuthError("invalid_grant", f"Invalid JWT: audience must be {GOOGLE_TOKEN_AUDIENCE}.")
    issued_at, expires_at = claims.get("iat"), claims.get("exp")
    if (
        not isinstance(issued_at, int | float)
        or not isinstance(expires_at, int | float)
        or issued_at > now + CLOCK_SKEW_S
        or expires_at < now - CLOCK_SKEW_S
        or expires_at - issued_at > MAX_ASSERTION_LIFETIME_S
    ):
        raise OAuthError(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
            "timeframe. Check your iat and exp values in the JWT claim.",
        )
    scopes = str(claims.get("scope", "")).split()
    if CLOUD_PLATFORM_SCOPE not in scopes:
        raise OAuthError("invalid_scope", f"The assertion does not ask for {CLOUD_PLATFORM_SCOPE}.")


def new_access_token() -> str:
    return "ya29.emu." + secrets.token_urlsafe(32)
