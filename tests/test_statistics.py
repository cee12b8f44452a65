"""Planner statistics are refreshed as the tables grow, on every back-end."""

from __future__ import annotations

from sqlalchemy import Engine, text

from medhub.fhir.sql_store import SqlResourceStore


def analyzed(engine: Engine) -> bool:
    with engine.connect() as connection:
        dialect = engine.dialect.name
        if dialect == "sqlite":
            rows = connection.execute(
                text("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'fhir_idx_token'")
            ).scalar()
        elif dialect == "postgresql":
            rows = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'fhir_idx_token' "
                    "AND schemaname = current_schema() AND last_analyze IS NOT NULL"
                )
            ).scalar()
        else:
            rows = connection.execute(
                text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = "
                    "'fhir_idx_token' AND table_schema = DATABASE() AND table_rows > 0"
                )
            ).scalar()
    return bool(rows)


def test_statistics_are_gathered_once_enough_rows_are_written(db_engine: Engine) -> None:
    store = SqlResourceStore(db_engine)
    with store.unit_of_work() as resources:
        for n in range(10):
            resources.create({"resourceType": "Patient", "identifier": [{"value": f"S{n}"}]})
    assert store.statistics.refreshes == 0
    with store.unit_of_work() as resources:
        for n in range(60):
            resources.create({"resourceType": "Patient", "identifier": [{"value": f"T{n}"}]})
    assert store.statistics.refreshes == 1
    assert analyzed(db_engine)
    with store.unit_of_work() as resources:  # the next refresh waits for 4x growth
        for n in range(60):
            resources.create({"resourceType": "Patient", "identifier": [{"value": f"U{n}"}]})
    assert store.statistics.refreshes == 1
