"""Tables of the SQL resource store: current versions, full history, search indexes.

``fhir_resource`` holds the head version of each resource (and the deleted
marker), ``fhir_resource_history`` every version ever stored. The seven
``fhir_idx_*`` tables (token, string, date, reference, quantity, number, uri)
hold the entries of :mod:`medhub.fhir.indexing` for the head version, so
searches never parse JSON. Numbers and quantity values are DOUBLE on every
back-end (a plain FLOAT is single precision on MariaDB).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Double, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, LongText, UtcDateTime

#: BIGINT ids, but SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class ResourceRow(Base):
    """The current version of one resource."""

    __tablename__ = "fhir_resource"

    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    body: Mapped[str | None] = mapped_column(LongText, nullable=True)

    __table_args__ = (
        Index("ix_fhir_resource_type_updated", "res_type", "last_updated"),
        MYSQL_TABLE_OPTIONS,
    )


class ResourceHistoryRow(Base):
    """Every version of every resource, including deletions (body NULL)."""

    __tablename__ = "fhir_resource_history"

    res_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    res_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(8))
    body: Mapped[str | None] = mapped_column(LongText, nullable=True)

    __table_args__ = (Index("ix_fhir_history_updated", "last_updated"), MYSQL_TABLE_OPTIONS)


class TokenIndexRow(Base):
    __tablename__ = "fhir_idx_token"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str] = mapped_column(String(255))
    text: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        # Covering: a code's matches come from the index alone (migration 0012).
        Index("ix_fhir_idx_token_lookup", "res_type", "param", "code", "system", "res_id"),
        Index("ix_fhir_idx_token_owner", "res_id", "res_type"),
        MYSQL_TABLE_OPTIONS,
    )


class StringIndexRow(Base):
    __tablename__ = "fhir_idx_string"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    normalized: Mapped[str] = mapped_column(String(255))
    exact: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_fhir_idx_string_lookup", "res_type", "param", "normalized"),
        Index("ix_fhir_idx_string_owner", "res_id", "res_type"),
        MYSQL_TABLE_OPTIONS,
    )


class DateIndexRow(Base):
    __tablename__ = "fhir_idx_date"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    low: Mapped[datetime] = mapped_column(UtcDateTime)
    high: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_fhir_idx_date_lookup", "res_type", "param", "low", "res_id"),
        # ge/gt/sa compare ``high``: a range scan instead of every row of the param.
        Index("ix_fhir_idx_date_high", "res_type", "param", "high", "res_id"),
        # Also the probe of a date criterion that does not drive the search
        # (``code=…&date=…``): answered from the index alone (migration 0012).
        Index("ix_fhir_idx_date_owner", "res_id", "res_type", "param", "high", "low"),
        MYSQL_TABLE_OPTIONS,
    )


class ReferenceIndexRow(Base):
    __tablename__ = "fhir_idx_reference"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    url: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_fhir_idx_reference_lookup", "res_type", "param", "target_id"),
        Index("ix_fhir_idx_reference_owner", "res_id", "res_type"),
        MYSQL_TABLE_OPTIONS,
    )


class QuantityIndexRow(Base):
    __tablename__ = "fhir_idx_quantity"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Double)
    system: Mapped[str | None] = mapped_column(String(255), nullable=True)
    code: Mapped[str | None] = mapped_column(String(255), nullable=True)
    unit: Mapped[str | None] = mapped_column(String(255), nullable=True)

    __table_args__ = (
        Index("ix_fhir_idx_quantity_lookup", "res_type", "param", "value"),
        Index("ix_fhir_idx_quantity_owner", "res_id", "res_type"),
        MYSQL_TABLE_OPTIONS,
    )


class NumberIndexRow(Base):
    __tablename__ = "fhir_idx_number"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Double)

    __table_args__ = (
        Index("ix_fhir_idx_number_lookup", "res_type", "param", "value"),
        Index("ix_fhir_idx_number_owner", "res_id", "res_type"),
        MYSQL_TABLE_OPTIONS,
    )


class UriIndexRow(Base):
    __tablename__ = "fhir_idx_uri"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    res_type: Mapped[str] = mapped_column(String(64))
    res_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_fhir_idx_uri_lookup", "res_type", "param", "uri"),
        Index("ix_fhir_idx_uri_owner", "res_id", "res_type"),
        MYSQL_TABLE_OPTIONS,
    )


INDEX_TABLES = (
    TokenIndexRow,
    StringIndexRow,
    DateIndexRow,
    ReferenceIndexRow,
    QuantityIndexRow,
    NumberIndexRow,
    UriIndexRow,
)
