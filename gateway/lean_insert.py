"""A bulk INSERT … ON CONFLICT DO NOTHING for plain rows, without Django's SQL compiler.

The recorder writes one RequestLog row per proxied request. `bulk_create` built a model
instance per row and sent every field of it through the compiler's per-value machinery:
about 130 µs of CPU a row on the gateway's one core, most of the recorder thread's share
in `make profile`, and long enough per batch to hold the GIL away from the event loop (the
non-stream c=1 p99 in `make bench` followed the flush interval). Here the statement is built
once per database vendor, values whose Python type the column takes as is are passed
straight to the driver, aware datetimes and finite decimals go straight to the backend's own
adapter (what the field's `get_db_prep_save` ends in, for such values, after checks they
pass: under half and a fortieth of its cost), and only the rest go through the field, so the
database sees exactly what `bulk_create` would send.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models, transaction
from django.db.models.constants import OnConflict

# Field classes whose get_db_prep_save returns a value of these exact types unchanged.
_TAKEN_AS_IS: tuple[tuple[type[models.Field], frozenset[type]], ...] = (
    (models.BooleanField, frozenset({bool})),
    (models.IntegerField, frozenset({int})),
    (models.CharField, frozenset({str})),
    (models.TextField, frozenset({str})),
)


AWARE_DATETIME = "datetime"
FINITE_DECIMAL = "decimal"


class _Column:
    __slots__ = ("attname", "field", "default", "has_callable_default", "as_is", "adapted")

    def __init__(self, field: models.Field) -> None:
        self.attname = field.attname
        self.field = field
        self.has_callable_default = callable(field.default)
        self.default = None if self.has_callable_default else field.get_default()
        target = field.target_field if isinstance(field, models.ForeignKey) else field
        self.as_is = next(
            (types for kind, types in _TAKEN_AS_IS if isinstance(target, kind)), frozenset()
        )
        # Values the backend adapts with no help from the field (see the module docstring).
        self.adapted = ""
        if type(target) is models.DateTimeField:
            self.adapted = AWARE_DATETIME
        elif type(target) is models.DecimalField:
            self.adapted = FINITE_DECIMAL

    def prepared(self, value: Any, connection: Any) -> Any:
        """`value` as `field.get_db_prep_save` makes it, by a shorter way where there is one."""
        kind = self.adapted
        if kind == AWARE_DATETIME:
            if type(value) is datetime.datetime and value.tzinfo is not None:
                return connection.ops.adapt_datetimefield_value(value)
        elif kind == FINITE_DECIMAL and type(value) is Decimal and value.is_finite():
            field: Any = self.field
            return connection.ops.adapt_decimalfield_value(
                value, field.max_digits, field.decimal_places
            )
        return self.field.get_db_prep_save(value, connection)


class LeanInsert:
    """Inserts rows (dicts keyed by field attname) into `model`'s table; rows whose unique
    key is already there are skipped, as with `bulk_create(ignore_conflicts=True)`."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        for field in fields:
            sets_itself = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
            if sets_itself or hasattr(field, "get_placeholder"):
                # bulk_create would ask the field for its value or for its SQL; this does not
                raise ImproperlyConfigured(f"{model.__name__}.{field.name} needs bulk_create")
        self._columns = [_Column(field) for field in fields]
        self._fields = fields
        self._attnames = frozenset(column.attname for column in self._columns)
        self._statements: dict[str, str] = {}

    def insert(self, rows: Iterable[Mapping[str, Any]], *, using: str = "default") -> None:
        self.insert_values(self.values(rows, using=using), using=using)

    def values(
        self, rows: Iterable[Mapping[str, Any]], *, using: str = "default"
    ) -> list[tuple[Any, ...]]:
        """The rows as the driver takes them, for `insert_values`: a caller may build them a
        few at a time and insert them all in one statement."""
        connection = connections[using]
        return [self._values(row, connection) for row in rows]

    def insert_values(self, values: list[tuple[Any, ...]], *, using: str = "default") -> None:
        if not values:
            return
        connection = connections[using]
        with transaction.atomic(using=using, savepoint=False), connection.cursor() as cursor:
            cursor.executemany(self._statement(connection), values)

    def _statement(self, connection: Any) -> str:
        statement = self._statements.get(connection.vendor)
        if statement is None:
            ops = connection.ops
            columns = ", ".join(ops.quote_name(field.column) for field in self._fields)
            placeholders = ", ".join(["%s"] * len(self._fields))
            suffix = ops.on_conflict_suffix_sql(self._fields, OnConflict.IGNORE, None, None)
            statement = (
                f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} "
                f"{ops.quote_name(self.model._meta.db_table)} ({columns}) "
                f"VALUES ({placeholders}) {suffix}"
            ).rstrip()
            self._statements[connection.vendor] = statement
        return statement

    def _values(self, row: Mapping[str, Any], connection: Any) -> tuple[Any, ...]:
        unknown = row.keys() - self._attnames
        if unknown:
            raise TypeError(f"{self.model.__name__} has no field {', '.join(sorted(unknown))}")
        values = []
        for column in self._columns:
            if column.attname in row:
                value = row[column.attname]
            elif column.has_callable_default:
                value = column.field.get_default()
            else:
                value = column.default
            if value is not None and type(value) not in column.as_is:
                value = column.prepared(value, connection)
            values.append(value)
        return tuple(values)
