"""Alembic migrations for every SQL table medhub owns, and a function to run them.

``medhub migrate`` and ``make run`` call :func:`upgrade`; tests call it on
fresh schemas so the migrations themselves are what the suites exercise.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from medhub.api import account_tables as _account_tables  # noqa: F401

# The table modules, imported so ``metadata`` is complete for autogenerate checks.
from medhub.cds import alert_rows as _alert_tables  # noqa: F401
from medhub.db import outbox as _outbox_tables  # noqa: F401
from medhub.db.base import metadata
from medhub.devices import registry_tables as _device_tables  # noqa: F401
from medhub.fhir import sql_tables as _fhir_tables  # noqa: F401
from medhub.hl7 import message_log as _hl7_tables  # noqa: F401
from medhub.hl7 import outbound_queue as _outbound_tables  # noqa: F401
from medhub.hl7 import pharmacy_orders as _pharmacy_tables  # noqa: F401

MIGRATIONS_DIR = Path(__file__).parent

__all__ = ["metadata", "upgrade", "alembic_config"]


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs on ``engine`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)
