"""The fixed cast and shared fixtures.

alice owns cost center `research`, bob is a member of it, charlie is an outsider with a
cost center of his own (`ops`). Each has one active virtual key.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.db import connections

from accounts.models import CostCenter, User
from accounts.services import virtual_key_issue
from gateway.recorder import recorder

pytest_plugins = [
    "tests.live_servers",
    "gateway.emulator.pytest_plugin",
    "gateway.emulator_bedrock.pytest_plugin",
    "gateway.emulator_vertex.pytest_plugin",
    "gateway.emulator_openai.pytest_plugin",
]


@dataclass
class Person:
    user: User
    secret: str


@pytest.fixture(scope="session", autouse=True)
def _database_connections_closed_before_teardown(django_db_setup, django_db_blocker):
    """In-process proxy tests start the recorder's writer thread, which keeps its connection
    between batches; stopping it (and closing the pools) lets pytest-django drop the test
    database cleanly."""
    yield
    with django_db_blocker.unblock():
        recorder().stop()
        for connection in connections.all(initialized_only=True):
            if hasattr(connection, "close_pool"):
                connection.close_pool()


@pytest.fixture
def research(db) -> CostCenter:
    return CostCenter.objects.create(
        code="research",
        name="Research",
        monthly_budget_usd=Decimal("500.00"),
        contact_email="alice@example.com",
    )


@pytest.fixture
def ops(db) -> CostCenter:
    return CostCenter.objects.create(code="ops", name="Operations")


@pytest.fixture
def alice(research) -> Person:
    user = User.objects.create_user(
        "alice", "alice@example.com", "alice-password", default_cost_center=research
    )
    return Person(user=user, secret=virtual_key_issue(owner=user, name="alice laptop").secret)


@pytest.fixture
def bob(research) -> Person:
    user = User.objects.create_user(
        "bob", "bob@example.com", "bob-password", default_cost_center=research
    )
    return Person(user=user, secret=virtual_key_issue(owner=user, name="bob laptop").secret)


@pytest.fixture
def charlie(ops) -> Person:
    user = User.objects.create_user(
        "charlie", "charlie@example.com", "charlie-password", default_cost_center=ops
    )
    return Person(user=user, secret=virtual_key_issue(owner=user, name="charlie laptop").secret)


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("root-admin", "admin@example.com", "admin-password")
