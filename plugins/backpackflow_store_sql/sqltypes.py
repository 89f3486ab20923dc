"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no decimal, no time zone and no JSONB; these types hide the difference so that the
store returns the same Python values from either backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

#: JSON documents: ``JSONB`` on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class Money(TypeDecorator[Decimal]):
    """An exact :class:`~decimal.Decimal`, never rounded through ``float``.

    PostgreSQL stores an unconstrained ``NUMERIC`` (exact, keeps each value's own scale); other
    databases store the plain decimal text (``'0.000123'``), which SQLite leaves untouched. Both
    give back exactly the ``Decimal`` that went in. ``float`` is refused: it is already inexact.
    """

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise TypeError(f"money must be a Decimal or int, not {type(value).__name__}")
        amount = Decimal(value)
        if not amount.is_finite():
            raise ValueError(f"money must be finite, not {amount}")
        if dialect.name == "postgresql":
            return amount
        return format(amount, "f")  # positional notation: '0.0000001', never '1E-7'

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """A time-zone-aware UTC ``datetime`` on every backend.

    PostgreSQL stores ``TIMESTAMP WITH TIME ZONE``; SQLite stores naive UTC text. Values come
    back aware and in UTC either way, so comparisons and arithmetic never mix naive and aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("datetimes stored by the run store must be time-zone aware")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
