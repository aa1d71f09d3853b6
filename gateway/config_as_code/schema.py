"""The YAML file's shape, as pydantic models: types, limits and defaults of every field.

The limits mirror the model fields (lengths, decimal places, choices) so a file that
validates here saves without a database error. Messages never echo the input: a misplaced
secret must not end up in a terminal or a CI log.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Annotated, Any

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator, validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gateway.models import CachePolicy, CacheTTL, ProviderKind

SECTIONS = ("cost_centers", "users", "providers", "routes", "prices")


# --- field types -----------------------------------------------------------------------------


def _slug(value: str) -> str:
    if not re.fullmatch(r"[-a-zA-Z0-9_]+", value):
        raise PydanticCustomError(
            "slug", "must contain only letters, digits, hyphens and underscores"
        )
    return value


def _username(value: str) -> str:
    try:
        UnicodeUsernameValidator()(value)
    except DjangoValidationError as error:
        raise PydanticCustomError(
            "username", "may contain only letters, digits and @ . + - _"
        ) from error
    return value


def _email_or_blank(value: str) -> str:
    if value:
        try:
            validate_email(value)
        except DjangoValidationError as error:
            raise PydanticCustomError("email", "is not a valid email address") from error
    return value


def _http_url(value: str) -> str:
    try:
        URLValidator(schemes=["http", "https"])(value)
    except DjangoValidationError as error:
        raise PydanticCustomError("url", "must be an http:// or https:// URL") from error
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise PydanticCustomError(
            "env_name", "must be an environment variable name such as ANTHROPIC_KEY_A"
        )
    return value


def _no_float(value: Any) -> Any:
    """YAML reads `12.50` as a float; money must arrive as an exact decimal string."""
    if isinstance(value, float | bool):
        raise PydanticCustomError(
            "money_as_string", 'write amounts as quoted strings, e.g. "12.50"'
        )
    return value


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    """`options` is stored as JSON; YAML dates and other non-JSON values must be quoted."""
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise PydanticCustomError(
            "json_object", "may hold only strings, numbers, booleans, null, lists and mappings"
        ) from error
    return value


def _none_as_empty_list(value: Any) -> Any:
    """A section header with everything below it commented out is an empty section."""
    return [] if value is None else value


Slug = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_slug)]
Username = Annotated[
    str, StringConstraints(min_length=1, max_length=150), AfterValidator(_username)
]
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(_email_or_blank)]
HttpUrl = Annotated[str, StringConstraints(max_length=500), AfterValidator(_http_url)]
EnvName = Annotated[str, StringConstraints(max_length=200), AfterValidator(_env_name)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Money = Annotated[Decimal, BeforeValidator(_no_float), Field(ge=0, max_digits=14, decimal_places=2)]
PricePerMTok = Annotated[
    Decimal, BeforeValidator(_no_float), Field(ge=0, max_digits=12, decimal_places=4)
]
Timeout = Annotated[float, Field(ge=0.1)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100)]
NoneIsEmpty = BeforeValidator(_none_as_empty_list)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections --------------------------------------------------------------------------------


class CostCenterConfig(_Entry):
    code: Slug
    name: Name
    monthly_budget_usd: Money | None = None
    external_billing_code: Annotated[str, StringConstraints(max_length=100)] = ""
    contact_email: Email = ""


class UserConfig(_Entry):
    username: Username
    email: Email = ""
    cost_center: Slug | None = None
    is_staff: bool = False
    monthly_budget_usd: Money | None = None


class TimeoutsConfig(_Entry):
    connect_s: Timeout = 10.0
    read_s: Timeout = 600.0


class UpstreamKeyConfig(_Entry):
    label: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    secret_env: EnvName
    weight: Annotated[int, Field(ge=1)] = 1
    enabled: bool = True
    # Declared only so that a literal secret gets a helpful error instead of "unknown field".
    secret: None = Field(default=None, exclude=True, repr=False)

    @field_validator("secret", mode="before")
    @classmethod
    def _reject_literal_secret(cls, value: Any) -> None:
        raise PydanticCustomError(
            "secret_in_file",
            "secrets are not read from the file; put the secret in an environment variable "
            "and name that variable with secret_env",
        )


class ProviderConfig(_Entry):
    name: Slug
    kind: ProviderKind
    base_url: HttpUrl
    options: Annotated[dict[str, Any], AfterValidator(_json_object)] = Field(default_factory=dict)
    timeouts: TimeoutsConfig = TimeoutsConfig()
    enabled: bool = True
    keys: Annotated[list[UpstreamKeyConfig], NoneIsEmpty] = Field(default_factory=list)


class CacheConfig(_Entry):
    policy: CachePolicy = CachePolicy.OFF
    ttl: CacheTTL = CacheTTL.FIVE_MINUTES


class RouteTargetConfig(_Entry):
    provider: Slug
    model: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None

    @property
    def upstream_model(self) -> str:
        return self.model or ""


class RouteConfig(_Entry):
    name: Slug
    match: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    priority: int = 100
    cost_centers: Annotated[list[Slug], NoneIsEmpty] = Field(default_factory=list)
    key_tags: Annotated[list[Tag], NoneIsEmpty] = Field(default_factory=list)
    cache: CacheConfig = CacheConfig()
    enabled: bool = True
    targets: Annotated[list[RouteTargetConfig], Field(min_length=1)]


class PriceConfig(_Entry):
    """USD per million tokens; cache prices default to Anthropic's multipliers of `input`."""

    model: ModelName
    provider: Slug | None = None
    effective_from: AwareDatetime
    input: PricePerMTok
    output: PricePerMTok
    cache_write_5m: PricePerMTok | None = None
    cache_write_1h: PricePerMTok | None = None
    cache_read: PricePerMTok | None = None

    def resolved_cache_write_5m(self) -> Decimal:
        return _or_multiple(self.cache_write_5m, self.input, "1.25")

    def resolved_cache_write_1h(self) -> Decimal:
        return _or_multiple(self.cache_write_1h, self.input, "2")

    def resolved_cache_read(self) -> Decimal:
        return _or_multiple(self.cache_read, self.input, "0.1")


def _or_multiple(given: Decimal | None, base: Decimal, multiplier: str) -> Decimal:
    """Quantized to the column's 4 places, so a re-run compares equal to what was stored."""
    if given is not None:
        return given
    return (base * Decimal(multiplier)).quantize(Decimal("0.0001"))


class GatehouseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_centers: Annotated[list[CostCenterConfig], NoneIsEmpty] = Field(default_factory=list)
    users: Annotated[list[UserConfig], NoneIsEmpty] = Field(default_factory=list)
    providers: Annotated[list[ProviderConfig], NoneIsEmpty] = Field(default_factory=list)
    routes: Annotated[list[RouteConfig], NoneIsEmpty] = Field(default_factory=list)
    prices: Annotated[list[PriceConfig], NoneIsEmpty] = Field(default_factory=list)
