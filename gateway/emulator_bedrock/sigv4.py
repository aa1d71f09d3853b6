"""Check a request's SigV4 signature the way AWS does: sign it again with botocore and compare.

The canonical request is rebuilt from what arrived on the wire: the raw (still
percent-encoded) path, the query string, the headers named in `SignedHeaders` and the body.
botocore then computes the canonical request, string to sign and signature with the
secret the emulator knows for the access key id, at the request's own `X-Amz-Date`.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW_S = 300.0
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<access_key_id>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)"
    r"/(?P<service>[^/]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;._-]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
INVALID_TOKEN = "The security token included in the request is invalid."
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation "
    "for details."
)


@dataclass(frozen=True)
class AwsCredential:
    secret_access_key: str
    session_token: str | None = None


class AwsAuthError(Exception):
    """Refused before the operation runs: AWS answers these 403 whatever the cause."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]
    body: bytes


def verify(
    request: SignedRequest,
    *,
    credentials: dict[str, AwsCredential],
    region: str,
    service: str,
    now: float,
) -> str:
    """The access key id that signed `request`, or AwsAuthError saying what is wrong."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise AwsAuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise AwsAuthError(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
            "parameters in the AWS4-HMAC-SHA256 format.",
        )
    signed = match["signed"].split(";")
    missing = [name for name in ("host", "x-amz-date") if name not in signed]
    missing += [name for name in signed if name not in request.headers]
    if missing:
        raise AwsAuthError(
            "IncompleteSignatureException",
            f"Signed header(s) absent or unsigned: {', '.join(sorted(set(missing)))}.",
        )
    amz_date = request.headers["x-amz-date"]
    _check_time(amz_date, match["date"], now)
    if match["service"] != service:
        raise AwsAuthError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    if match["region"] != region:
        raise AwsAuthError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{match['region']}'.",
        )
    access_key_id = match["access_key_id"]
    credential = credentials.get(access_key_id)
    if credential is None:
        raise AwsAuthError("UnrecognizedClientException", INVALID_TOKEN)
    presented_token = request.headers.get("x-amz-security-token")
    if presented_token != credential.session_token or (
        presented_token is not None and "x-amz-security-token" not in signed
    ):
        raise AwsAuthError("UnrecognizedClientException", INVALID_TOKEN)
    expected = _signature(request, signed, amz_date, access_key_id, credential, region, service)
    if not hmac.compare_digest(expected, match["signature"]):
        raise AwsAuthError("InvalidSignatureException", SIGNATURE_MISMATCH)
    return access_key_id


def _check_time(amz_date: str, scope_date: str, now: float) -> None:
    try:
        signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise AwsAuthError(
            "IncompleteSignatureException", f"X-Amz-Date '{amz_date}' is not ISO-8601 basic."
        ) from None
    if abs(signed_at.timestamp() - now) > MAX_CLOCK_SKEW_S:
        raise AwsAuthError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is more than 5 minutes away from the server's time.",
        )
    if scope_date != amz_date[:8]:
        raise AwsAuthError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date ({amz_date}).",
        )


def _signature(
    request: SignedRequest,
    signed: list[str],
    amz_date: str,
    access_key_id: str,
    credential: AwsCredential,
    region: str,
    service: str,
) -> str:
    query = f"?{request.query_string}" if request.query_string else ""
    url = f"http://{request.headers['host']}{request.raw_path}{query}"
    aws_request = AWSRequest(
        method=request.method,
        url=url,
        data=request.body,
        headers={name: request.headers[name] for name in signed},
    )
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(access_key_id, credential.secret_access_key, credential.session_token),
        service,
        region,
    )
    canonical_request = signer.canonical_request(aws_request)
    return signer.signature(signer.string_to_sign(aws_request, canonical_request), aws_request)
