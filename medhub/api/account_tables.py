"""SQL tables of the people and systems that may call medhub.

Secrets are never stored: passwords as argon2id hashes (RFC 9106), refresh
tokens and API keys as SHA-256 digests of 256-bit random values (a digest is
enough for a value with that much entropy, and lets a lookup use an index).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medhub.db.base import MYSQL_TABLE_OPTIONS, Base, UtcDateTime
from medhub.fhir.sql_tables import AutoId


class UserRow(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    #: JSON list of care unit names; ``["*"]`` for every unit.
    care_units: Mapped[str] = mapped_column(Text)
    practitioner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("uq_app_user_username", "username", unique=True),
        MYSQL_TABLE_OPTIONS,
    )


class RefreshTokenRow(Base):
    __tablename__ = "refresh_token"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(AutoId)
    token_hash: Mapped[str] = mapped_column(String(64))
    #: Every token rotated from one login shares a family: reuse revokes the family.
    family: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("uq_refresh_token_hash", "token_hash", unique=True),
        Index("ix_refresh_token_family", "family"),
        MYSQL_TABLE_OPTIONS,
    )


class ApiKeyRow(Base):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[str] = mapped_column(Text)
    care_units: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        Index("uq_api_key_prefix", "prefix", unique=True),
        MYSQL_TABLE_OPTIONS,
    )
