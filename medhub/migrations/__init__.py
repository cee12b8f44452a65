"""Alembic migrations for every SQL table medhub owns, and a function to run them.

``medhub migrate`` and ``make run`` call :func:`upgrade`; tests call it on
fresh schemas so the migrations themselves are what the suites exercise.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from medhub.api import account_tables as _account_tables  # noqa: F401

# The table modules, imported so ``metadata`` is complete for autogenerate checks.
from medhub.cds import alert_rows as _alert_tables  # noqa: F401
from medhub.db import outbox as _outbox_tables  # noqa: F401
from medhub.db.base import metadata
from medhub.devices import partition_claims as _partition_tables  # noqa: F401
from medhub.devices import registry_tables as _device_tables  # noqa: F401
from medhub.fhir import key_locks as _key_lock_table  # noqa: F401
from medhub.fhir import sql_tables as _fhir_tables  # noqa: F401
from medhub.hl7 import message_log as _hl7_tables  # noqa: F401
from medhub.hl7 import outbound_queue as _outbound_tables  # noqa: F401
from medhub.hl7 import pharmacy_orders as _pharmacy_tables  # noqa: F401

MIGRATIONS_DIR = Path(__file__).parent

__all__ = ["metadata", "upgrade", "alembic_config", "schema_revisions", "known_revisions"]


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs on ``engine`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """The database's Alembic revision and the newest this code ships, for readiness.

    A replica started with ``MEDHUB_AUTO_MIGRATE=false`` before ``medhub migrate``
    ran must not take traffic: its queries would fail on missing columns.
    """
    head = _head_revision()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


@cache
def _head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this code ships (a database at another one is newer than the code)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions())
