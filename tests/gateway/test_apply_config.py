"""`manage.py apply_config`: config as code, idempotent and all-or-nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection

from accounts.models import CostCenter, User
from gateway.models import ModelPrice, Provider, Route, RouteTarget, UpstreamKey

EXAMPLE = Path(settings.BASE_DIR) / "gatehouse.example.yaml"
EXAMPLE_SECRETS = {
    "ANTHROPIC_KEY_TEAM_A": "sk-ant-api03-team-a-0123456789",
    "ANTHROPIC_KEY_TEAM_B": "sk-ant-api03-team-b-9876543210",
    "EGRESS_PROXY_KEY": "egress-proxy-shared-secret-42",
}
MODELS = (CostCenter, User, Provider, UpstreamKey, Route, RouteTarget, ModelPrice)


@pytest.fixture
def example_env(monkeypatch) -> dict[str, str]:
    for name, value in EXAMPLE_SECRETS.items():
        monkeypatch.setenv(name, value)
    return EXAMPLE_SECRETS


def apply_config(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("apply_config", str(path), *args, stdout=out)
    return out.getvalue()


def write_config(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "gatehouse.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def small_config() -> dict[str, Any]:
    return {
        "cost_centers": [{"code": "research", "name": "Research"}],
        "users": [{"username": "alice", "email": "alice@example.com", "cost_center": "research"}],
        "providers": [
            {
                "name": "anthropic",
                "kind": "anthropic",
                "base_url": "https://api.anthropic.com",
                "keys": [{"label": "team-a", "secret_env": "ANTHROPIC_KEY_TEAM_A"}],
            }
        ],
        "routes": [
            {"name": "default", "match": "claude-*", "targets": [{"provider": "anthropic"}]}
        ],
        "prices": [
            {
                "model": "my-model",
                "provider": "anthropic",
                "effective_from": "2026-11-01T00:00:00Z",
                "input": "3",
                "output": "15",
            }
        ],
    }


def database_rows() -> dict[str, list[dict[str, Any]]]:
    """Every column of every row the command can touch, in a stable order."""
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in MODELS}


def raw_secret_column(label: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret FROM {UpstreamKey._meta.db_table} WHERE label = %s", [label])
        return cursor.fetchone()[0]


def test_example_file_applies_every_section(db, example_env):
    # given the example file and the environment variables it names
    # when it is applied
    output = apply_config(EXAMPLE)

    # then every section is created as written
    assert output == (
        "+ cost_centers research\n"
        "+ cost_centers platform\n"
        "+ users alice\n"
        "+ users bob\n"
        "+ users dana\n"
        "+ providers anthropic\n"
        "+ providers egress-proxy\n"
        "+ upstream_keys anthropic/team-a\n"
        "+ upstream_keys anthropic/team-b\n"
        "+ upstream_keys egress-proxy/shared\n"
        "+ routes haiku\n"
        "+ routes default\n"
        "+ prices claude-sonnet-4-6 @ egress-proxy from 2026-09-01T00:00:00+00:00\n"
        "cost_centers: 2 created, 0 updated, 0 unchanged\n"
        "users: 3 created, 0 updated, 0 unchanged\n"
        "providers: 2 created, 0 updated, 0 unchanged\n"
        "upstream_keys: 3 created, 0 updated, 0 unchanged\n"
        "routes: 2 created, 0 updated, 0 unchanged\n"
        "prices: 1 created, 0 updated, 0 unchanged\n"
        "total: 13 created, 0 updated, 0 unchanged\n"
    )
    research = CostCenter.objects.get(code="research")
    assert (research.name, research.monthly_budget_usd, research.external_billing_code) == (
        "Research",
        Decimal("500.00"),
        "CC-4410",
    )
    assert research.contact_email == "research-lead@example.com"
    assert list(
        User.objects.order_by("username").values_list(
            "username", "email", "default_cost_center__code", "is_staff", "monthly_budget_usd"
        )
    ) == [
        ("alice", "alice@example.com", "research", True, None),
        ("bob", "bob@example.com", "research", False, Decimal("100.00")),
        ("dana", "dana@example.com", "platform", False, Decimal("250.00")),
    ]
    assert [user.has_usable_password() for user in User.objects.all()] == [False, False, False]
    egress = Provider.objects.get(name="egress-proxy")
    assert (egress.kind, egress.base_url, egress.options, egress.is_enabled) == (
        "anthropic",
        "https://llm-egress.example.com/anthropic",
        {},
        True,
    )
    assert (egress.connect_timeout_s, egress.read_timeout_s) == (5.0, 300.0)
    assert [
        (key.provider.name, key.label, key.secret.reveal(), key.weight, key.is_enabled)
        for key in UpstreamKey.objects.select_related("provider")
    ] == [
        ("anthropic", "team-a", "sk-ant-api03-team-a-0123456789", 2, True),
        ("anthropic", "team-b", "sk-ant-api03-team-b-9876543210", 1, True),
        ("egress-proxy", "shared", "egress-proxy-shared-secret-42", 1, True),
    ]
    assert list(
        Route.objects.values_list(
            "name", "model_pattern", "priority", "cache_policy", "cache_ttl", "is_enabled"
        )
    ) == [
        ("haiku", "claude-haiku-*", 10, "system", "5m", True),
        ("default", "claude-*", 100, "auto", "1h", True),
    ]
    assert list(
        RouteTarget.objects.values_list(
            "route__name", "position", "provider__name", "upstream_model"
        )
    ) == [
        ("haiku", 0, "anthropic", "claude-haiku-4-5-20251001"),
        ("default", 0, "anthropic", ""),
        ("default", 1, "egress-proxy", ""),
    ]
    price = ModelPrice.objects.get(provider=egress, model="claude-sonnet-4-6")
    assert price.effective_from == datetime(2026, 9, 1, tzinfo=UTC)
    assert (
        price.input_per_mtok,
        price.output_per_mtok,
        price.cache_write_5m_per_mtok,
        price.cache_write_1h_per_mtok,
        price.cache_read_per_mtok,
    ) == (Decimal("2.70"), Decimal("13.50"), Decimal("3.375"), Decimal("5.40"), Decimal("0.27"))


def test_applying_the_same_file_twice_changes_nothing(db, example_env):
    # given the example has been applied once
    apply_config(EXAMPLE)
    rows_before = database_rows()
    ciphertexts_before = [raw_secret_column(label) for label in ("team-a", "team-b", "shared")]

    # when it is applied again
    output = apply_config(EXAMPLE)

    # then no row changed, not even updated_at or the encrypted secrets
    assert database_rows() == rows_before
    assert [
        raw_secret_column(label) for label in ("team-a", "team-b", "shared")
    ] == ciphertexts_before
    assert output == (
        "cost_centers: 0 created, 0 updated, 2 unchanged\n"
        "users: 0 created, 0 updated, 3 unchanged\n"
        "providers: 0 created, 0 updated, 2 unchanged\n"
        "upstream_keys: 0 created, 0 updated, 3 unchanged\n"
        "routes: 0 created, 0 updated, 2 unchanged\n"
        "prices: 0 created, 0 updated, 1 unchanged\n"
        "total: 0 created, 0 updated, 13 unchanged\n"
    )


def test_changing_one_field_updates_only_that_row(db, example_env, tmp_path):
    # given the example has been applied
    apply_config(EXAMPLE)
    rows_before = database_rows()
    # and a copy of the file where only the haiku route's priority differs
    text = EXAMPLE.read_text().replace("priority: 10\n", "priority: 20\n")
    path = write_config(tmp_path, text)

    # when the copy is applied
    output = apply_config(path)

    # then only that route was saved
    rows_after = database_rows()
    haiku_before, default_before = rows_before["Route"]
    haiku_after, default_after = rows_after["Route"]
    assert default_after == default_before
    assert haiku_after["priority"] == 20
    assert haiku_after["updated_at"] > haiku_before["updated_at"]
    assert {**haiku_after, "priority": 10, "updated_at": haiku_before["updated_at"]} == haiku_before
    assert {name: rows for name, rows in rows_after.items() if name != "Route"} == {
        name: rows for name, rows in rows_before.items() if name != "Route"
    }
    assert output.splitlines()[0] == "~ routes haiku: priority"
    assert "routes: 0 created, 1 updated, 1 unchanged" in output.splitlines()
    assert output.splitlines()[-1] == "total: 0 created, 1 updated, 12 unchanged"


def test_route_targets_are_replaced_in_the_order_written(db, example_env, tmp_path):
    # given the example has been applied
    apply_config(EXAMPLE)
    # and the default route's primary and fallback swapped
    data = yaml.safe_load(EXAMPLE.read_text())
    data["routes"][1]["targets"] = [{"provider": "egress-proxy"}, {"provider": "anthropic"}]
    path = write_config(tmp_path, data)

    # when applied
    output = apply_config(path)

    # then the route lists its targets in the new order
    assert output.splitlines()[0] == "~ routes default: targets"
    assert list(
        RouteTarget.objects.filter(route__name="default").values_list("position", "provider__name")
    ) == [(0, "egress-proxy"), (1, "anthropic")]


BAD_ENTRIES = [
    pytest.param(
        lambda data: data["users"][0].update(cost_center="reserch"),
        "users[0] (alice): cost_center: unknown cost center 'reserch'",
        id="user-cost-center",
    ),
    pytest.param(
        lambda data: data["routes"][0]["targets"][0].update(provider="anthropc"),
        "routes[0] (default): targets[0].provider: unknown provider 'anthropc'",
        id="route-target-provider",
    ),
    pytest.param(
        lambda data: data["routes"][0].update(cost_centers=["research", "finance"]),
        "routes[0] (default): cost_centers[1]: unknown cost center 'finance'",
        id="route-cost-center",
    ),
    pytest.param(
        lambda data: data["prices"][0].update(provider="openai"),
        "prices[0] (my-model): provider: unknown provider 'openai'",
        id="price-provider",
    ),
    pytest.param(
        lambda data: data["providers"][0].update(kind="anthropix"),
        "providers[0] (anthropic): kind: Input should be 'anthropic', 'bedrock', 'vertex' or 'openai'",
        id="provider-kind",
    ),
    pytest.param(
        lambda data: data["providers"][0].update(base_url="api.anthropic.com"),
        "providers[0] (anthropic): base_url: must be an http:// or https:// URL",
        id="provider-base-url",
    ),
    pytest.param(
        lambda data: data["routes"][0].update(match=""),
        "routes[0] (default): match: String should have at least 1 character",
        id="route-empty-match",
    ),
    pytest.param(
        lambda data: data["cost_centers"][0].update(monthly_budget_usd=500.5),
        'cost_centers[0] (research): monthly_budget_usd: write amounts as quoted strings, e.g. "12.50"',
        id="money-as-float",
    ),
    pytest.param(
        lambda data: data["prices"][0].update(effective_from="2026-11-01T00:00:00"),
        "prices[0] (my-model): effective_from: Input should have timezone info",
        id="price-naive-date",
    ),
    pytest.param(
        lambda data: data["users"][0].update(cost_centre="research"),
        "users[0] (alice): cost_centre: unknown field",
        id="unknown-field",
    ),
    pytest.param(
        lambda data: data["cost_centers"].append({"code": "research", "name": "Again"}),
        "cost_centers[1] (research): code: duplicate of cost_centers[0] (same code)",
        id="duplicate-entry",
    ),
]


@pytest.mark.parametrize(("break_entry", "expected"), BAD_ENTRIES)
def test_a_bad_entry_anywhere_applies_nothing_and_names_file_entry_and_field(
    db, monkeypatch, tmp_path, break_entry: Callable[[dict[str, Any]], None], expected: str
):
    # given a file whose entries are all new, one of them broken
    monkeypatch.setenv("ANTHROPIC_KEY_TEAM_A", "sk-ant-team-a")
    data = copy.deepcopy(small_config())
    break_entry(data)
    path = write_config(tmp_path, data)
    rows_before = database_rows()

    # when it is applied
    with pytest.raises(CommandError) as raised:
        apply_config(path)

    # then the error names the file, the entry and the field, and nothing was written
    assert str(raised.value) == f"{path}: {expected}"
    assert database_rows() == rows_before


def test_a_database_error_while_writing_rolls_back_every_section(db, monkeypatch, tmp_path):
    # given a valid file, and a database that rejects the last row written (a price)
    monkeypatch.setenv("ANTHROPIC_KEY_TEAM_A", "sk-ant-team-a")
    path = write_config(tmp_path, small_config())
    rows_before = database_rows()

    def reject(*args, **kwargs):
        raise IntegrityError("price rejected")

    monkeypatch.setattr(ModelPrice, "save", reject)

    # when it is applied
    with pytest.raises(CommandError) as raised:
        apply_config(path)

    # then the rows written before the failure were rolled back too
    assert str(raised.value) == f"{path}: the database rejected the change: price rejected"
    assert database_rows() == rows_before


def test_a_literal_secret_in_the_file_is_rejected_without_echoing_it(db, tmp_path):
    # given a key written with its secret in the file
    data = small_config()
    data["providers"][0]["keys"] = [{"label": "team-a", "secret": "sk-ant-LEAKED-123"}]
    path = write_config(tmp_path, data)

    # when it is applied
    with pytest.raises(CommandError) as raised:
        apply_config(path)

    # then the message points to secret_env and does not contain the secret
    assert str(raised.value) == (
        f"{path}: providers[0] (anthropic): keys[0].secret_env: required\n"
        f"{path}: providers[0] (anthropic): keys[0].secret: secrets are not read from the "
        "file; put the secret in an environment variable and name that variable with secret_env"
    )
    assert "sk-ant-LEAKED-123" not in str(raised.value)
    assert UpstreamKey.objects.count() == 0


@pytest.mark.parametrize(
    ("value", "state"), [(None, "is not set"), ("", "is empty"), ("  \n", "is empty")]
)
def test_a_missing_or_empty_environment_variable_is_named(
    db, monkeypatch, tmp_path, value: str | None, state: str
):
    # given the key's environment variable is unset or blank
    if value is None:
        monkeypatch.delenv("ANTHROPIC_KEY_TEAM_A", raising=False)
    else:
        monkeypatch.setenv("ANTHROPIC_KEY_TEAM_A", value)
    path = write_config(tmp_path, small_config())

    # when the file is applied
    with pytest.raises(CommandError) as raised:
        apply_config(path)

    # then the error names the variable and nothing was written
    assert str(raised.value) == (
        f"{path}: providers[0] (anthropic): keys[0].secret_env: "
        f"environment variable ANTHROPIC_KEY_TEAM_A {state}"
    )
    assert Provider.objects.count() == 0


def test_upstream_key_secret_is_stored_encrypted_and_round_trips(db, example_env):
    # given the example's secrets in the environment
    # when it is applied
    output = apply_config(EXAMPLE)

    # then the column holds ciphertext, the model gives the secret back, the output hides it
    raw = raw_secret_column("team-a")
    assert raw.startswith("fernet:")
    assert "sk-ant-api03-team-a-0123456789" not in raw
    team_a = UpstreamKey.objects.get(label="team-a")
    assert team_a.secret.reveal() == "sk-ant-api03-team-a-0123456789"
    assert all(secret not in output for secret in example_env.values())


def test_a_rotated_secret_re_encrypts_only_that_key(db, example_env, monkeypatch):
    # given the example has been applied
    apply_config(EXAMPLE)
    team_b_ciphertext = raw_secret_column("team-b")
    team_a_updated_at = UpstreamKey.objects.get(label="team-a").updated_at

    # when team-a's secret is rotated in the environment and the file applied again
    monkeypatch.setenv("ANTHROPIC_KEY_TEAM_A", "sk-ant-api03-team-a-rotated")
    output = apply_config(EXAMPLE)

    # then only team-a changed, and the output names the field but not the value
    team_a = UpstreamKey.objects.get(label="team-a")
    assert team_a.secret.reveal() == "sk-ant-api03-team-a-rotated"
    assert team_a.updated_at > team_a_updated_at
    assert raw_secret_column("team-b") == team_b_ciphertext
    assert output.splitlines()[0] == "~ upstream_keys anthropic/team-a: secret"
    assert output.splitlines()[-1] == "total: 0 created, 1 updated, 12 unchanged"
    assert "rotated" not in output


def test_dry_run_writes_nothing_and_reports_what_would_change(db, example_env):
    # given an empty configuration
    rows_before = database_rows()

    # when the example is applied with --dry-run
    output = apply_config(EXAMPLE, "--dry-run")

    # then nothing was written, and the summary says what would have been
    assert database_rows() == rows_before
    lines = output.splitlines()
    assert lines[-2:] == [
        "total: 13 created, 0 updated, 0 unchanged",
        "dry run: nothing was written",
    ]
    assert "+ upstream_keys anthropic/team-a" in lines
    assert all(secret not in output for secret in example_env.values())


def test_dry_run_still_reports_errors(db, monkeypatch, tmp_path):
    # given a file with an unknown provider in a route
    monkeypatch.setenv("ANTHROPIC_KEY_TEAM_A", "sk-ant-team-a")
    data = small_config()
    data["routes"][0]["targets"][0]["provider"] = "anthropc"
    path = write_config(tmp_path, data)

    # when it is checked with --dry-run
    with pytest.raises(CommandError) as raised:
        apply_config(path, "--dry-run")

    # then the error is the same as without it
    assert str(raised.value) == (
        f"{path}: routes[0] (default): targets[0].provider: unknown provider 'anthropc'"
    )


def test_a_yaml_syntax_error_names_the_file_and_line(db, tmp_path):
    # given a file whose third line is not valid YAML
    path = write_config(tmp_path, "users:\n  - username: alice\n    email: alice: example.com\n")

    # when it is applied
    with pytest.raises(CommandError) as raised:
        apply_config(path)

    # then the message gives the file, line and column
    assert str(raised.value) == f"{path}: line 3, column 17: mapping values are not allowed here"


def test_references_may_point_to_rows_that_exist_only_in_the_database(
    db, research, monkeypatch, tmp_path
):
    # given the research cost center and an anthropic provider exist already
    Provider.objects.create(
        name="anthropic", kind="anthropic", base_url="https://api.anthropic.com"
    )
    # and a file that only names them
    path = write_config(
        tmp_path,
        {
            "users": [{"username": "erin", "cost_center": "research"}],
            "routes": [
                {
                    "name": "research-only",
                    "match": "claude-opus-*",
                    "cost_centers": ["research"],
                    "targets": [{"provider": "anthropic", "model": "claude-opus-4-8"}],
                }
            ],
        },
    )

    # when it is applied
    apply_config(path)

    # then the new rows point at the existing ones
    assert User.objects.get(username="erin").default_cost_center == research
    route = Route.objects.get(name="research-only")
    assert list(route.cost_centers.all()) == [research]
    assert list(route.targets.values_list("provider__name", "upstream_model")) == [
        ("anthropic", "claude-opus-4-8")
    ]


def test_entries_not_in_the_file_are_left_alone(db, example_env):
    # given a route and a user that the file does not mention
    provider = Provider.objects.create(
        name="bedrock-eu", kind="bedrock", base_url="https://bedrock.example.com"
    )
    manual_route = Route.objects.create(name="manual", model_pattern="manual-*")
    RouteTarget.objects.create(route=manual_route, provider=provider)
    User.objects.create_user("frank", "frank@example.com", "frank-password")

    # when the example is applied
    apply_config(EXAMPLE)

    # then they are still there, unchanged
    assert list(Route.objects.filter(name="manual").values_list("model_pattern", flat=True)) == [
        "manual-*"
    ]
    assert User.objects.get(username="frank").check_password("frank-password")
    assert Provider.objects.filter(name="bedrock-eu").exists()


def test_an_empty_file_changes_nothing(db, tmp_path):
    # given a file with only a comment
    path = write_config(tmp_path, "# nothing yet\n")

    # when it is applied
    output = apply_config(path)

    # then it succeeds with nothing to do
    assert output.splitlines()[-1] == "total: 0 created, 0 updated, 0 unchanged"
