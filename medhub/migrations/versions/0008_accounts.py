"""accounts: users, refresh tokens and API keys of the HTTP API

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 05:45:00.000000

Passwords are argon2id hashes; refresh tokens and API keys SHA-256 digests.
``refresh_token.family`` groups the tokens rotated from one login, so a reused
token revokes them all.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import medhub.db.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("care_units", sa.Text(), nullable=False),
        sa.Column("practitioner", sa.String(length=128), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("created_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        **_MYSQL,
    )
    op.create_index("uq_app_user_username", "app_user", ["username"], unique=True)
    op.create_table(
        "refresh_token",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("created_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.Column("expires_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.Column("used_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token")),
        **_MYSQL,
    )
    op.create_index("uq_refresh_token_hash", "refresh_token", ["token_hash"], unique=True)
    op.create_index("ix_refresh_token_family", "refresh_token", ["family"], unique=False)
    op.create_table(
        "api_key",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("care_units", sa.Text(), nullable=False),
        sa.Column("created_at", medhub.db.base.UtcDateTime(), nullable=False),
        sa.Column("revoked_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.Column("last_used_at", medhub.db.base.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        **_MYSQL,
    )
    op.create_index("uq_api_key_prefix", "api_key", ["prefix"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_api_key_prefix", table_name="api_key")
    op.drop_table("api_key")
    op.drop_index("ix_refresh_token_family", table_name="refresh_token")
    op.drop_index("uq_refresh_token_hash", table_name="refresh_token")
    op.drop_table("refresh_token")
    op.drop_index("uq_app_user_username", table_name="app_user")
    op.drop_table("app_user")
