"""The Alembic migrations create exactly the tables the code declares, on every back-end."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from medhub.db.base import metadata
from medhub.migrations import upgrade


def test_migrated_schema_matches_the_models(db_engine: Engine) -> None:
    with db_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_upgrade_is_idempotent(db_engine: Engine) -> None:
    upgrade(db_engine)
    upgrade(db_engine)
    tables = set(inspect(db_engine).get_table_names())
    assert {"fhir_resource", "fhir_resource_history", "hl7_message", "hl7_control_id"} <= tables
