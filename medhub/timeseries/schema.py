"""The time-series schema, created and upgraded by :func:`migrate` (idempotent).

Two tables: ``vital_sample`` (one row per device, vital, channel and device
timestamp; that key makes a resent batch harmless) and ``vital_rollup`` (per
patient, vital and minute: count, sum, min, max, kept up to date in the same
statement that inserts the samples).

The layout is chosen when the schema is created, from what the server has:

* PostgreSQL with the ``timescaledb`` extension available: a hypertable on
  ``device_time`` (1-day chunks) with native compression of chunks older than
  7 days, segmented by device and vital;
* PostgreSQL without it: declarative range partitioning by month on
  ``device_time``, a default partition for stragglers, and monthly partitions
  created ahead by :func:`ensure_partitions` (at migration and on each
  retention run), so old months are dropped whole;
* SQLite (the embedded default): plain tables, times as integer microseconds
  since the epoch (compact, and bucketing is integer arithmetic).

This schema is versioned by its own one-row table rather than Alembic: the
sample store may live in another database than the resource store (the edge
box keeps samples in their own SQLite file so sample ingest never waits on
the resource writer's lock), and its DDL depends on what the server offers at
migration time, which Alembic's static scripts do not express well.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

import structlog
from sqlalchemy import Connection, Engine, text

from medhub.errors import ConfigurationError

log = structlog.get_logger(__name__)

SCHEMA_VERSION: Final = 1
Layout = Literal["sqlite", "partitioned", "timescaledb"]

_SQLITE: Final = (
    """CREATE TABLE IF NOT EXISTS vital_sample (
        device_id TEXT NOT NULL,
        vital TEXT NOT NULL,
        channel TEXT NOT NULL DEFAULT '',
        device_time INTEGER NOT NULL,
        corrected_time INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        value REAL NOT NULL,
        unit TEXT NOT NULL,
        patient_id TEXT,
        mdc_code TEXT,
        PRIMARY KEY (device_id, vital, channel, device_time)
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS ix_vital_sample_patient
        ON vital_sample (patient_id, vital, corrected_time)""",
    """CREATE TABLE IF NOT EXISTS vital_rollup (
        patient_id TEXT NOT NULL,
        vital TEXT NOT NULL,
        minute INTEGER NOT NULL,
        n INTEGER NOT NULL,
        total REAL NOT NULL,
        lo REAL NOT NULL,
        hi REAL NOT NULL,
        PRIMARY KEY (patient_id, vital, minute)
    ) WITHOUT ROWID""",
)

_PG_SAMPLE_COLUMNS: Final = """
        device_id text NOT NULL,
        vital text NOT NULL,
        channel text NOT NULL DEFAULT '',
        device_time timestamptz NOT NULL,
        corrected_time timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        value double precision NOT NULL,
        unit text NOT NULL,
        patient_id text,
        mdc_code text,
        PRIMARY KEY (device_id, vital, channel, device_time)"""

_PG_COMMON: Final = (
    """CREATE INDEX IF NOT EXISTS ix_vital_sample_patient
        ON vital_sample (patient_id, vital, corrected_time)""",
    """CREATE TABLE IF NOT EXISTS vital_rollup (
        patient_id text NOT NULL,
        vital text NOT NULL,
        minute timestamptz NOT NULL,
        n bigint NOT NULL,
        total double precision NOT NULL,
        lo double precision NOT NULL,
        hi double precision NOT NULL,
        PRIMARY KEY (patient_id, vital, minute)
    )""",
)


def _sample_table_exists(connection: Connection) -> bool:
    if connection.dialect.name == "sqlite":
        found = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vital_sample'"
        ).first()
    else:
        found = connection.exec_driver_sql("SELECT to_regclass('vital_sample')").scalar()
    return bool(found)


def layout_of(connection: Connection) -> Layout:
    """The layout an existing schema was created with (or would be created with now)."""
    if connection.dialect.name == "sqlite":
        return "sqlite"
    row = connection.exec_driver_sql(
        "SELECT layout FROM timeseries_schema LIMIT 1"
        if _has_version_table(connection)
        else "SELECT NULL"
    ).first()
    if row is not None and row[0]:
        return row[0]  # type: ignore[no-any-return]
    return "timescaledb" if timescaledb_available(connection) else "partitioned"


def _has_version_table(connection: Connection) -> bool:
    return bool(connection.exec_driver_sql("SELECT to_regclass('timeseries_schema')").scalar())


def timescaledb_available(connection: Connection) -> bool:
    """Whether this PostgreSQL server can load TimescaleDB (installed, not necessarily created)."""
    return bool(
        connection.exec_driver_sql(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).first()
    )


def migrate(engine: Engine, *, now: datetime | None = None) -> Layout:
    """Create or upgrade the time-series schema; returns the layout in use."""
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"the time-series store runs on SQLite or PostgreSQL, not {dialect}; set "
            "MEDHUB_TIMESERIES_URL to one of those"
        )
    with engine.begin() as connection:
        if dialect == "sqlite":
            for statement in _SQLITE:
                connection.exec_driver_sql(statement)
            connection.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS timeseries_schema (version INTEGER, layout TEXT)"
            )
            layout: Layout = "sqlite"
        else:
            layout = _migrate_postgres(connection, now or datetime.now(UTC))
        if connection.exec_driver_sql("SELECT count(*) FROM timeseries_schema").scalar() == 0:
            connection.execute(
                text("INSERT INTO timeseries_schema (version, layout) VALUES (:v, :l)"),
                {"v": SCHEMA_VERSION, "l": layout},
            )
    log.info("timeseries.migrated", dialect=dialect, layout=layout)
    return layout


def _migrate_postgres(connection: Connection, now: datetime) -> Layout:
    connection.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS timeseries_schema (version integer, layout text)"
    )
    if _sample_table_exists(connection):
        layout = layout_of(connection)
    elif timescaledb_available(connection):
        layout = "timescaledb"
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
        connection.exec_driver_sql(f"CREATE TABLE vital_sample ({_PG_SAMPLE_COLUMNS})")
        connection.exec_driver_sql(
            "SELECT create_hypertable('vital_sample', 'device_time', "
            "chunk_time_interval => interval '1 day')"
        )
        connection.exec_driver_sql(
            "ALTER TABLE vital_sample SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'device_id, vital')"
        )
        connection.exec_driver_sql(
            "SELECT add_compression_policy('vital_sample', interval '7 days')"
        )
    else:
        layout = "partitioned"
        connection.exec_driver_sql(
            f"CREATE TABLE vital_sample ({_PG_SAMPLE_COLUMNS}) PARTITION BY RANGE (device_time)"
        )
        connection.exec_driver_sql(
            "CREATE TABLE vital_sample_default PARTITION OF vital_sample DEFAULT"
        )
    for statement in _PG_COMMON:
        connection.exec_driver_sql(statement)
    if layout == "partitioned":
        ensure_partitions(connection, now)
    return layout


def month_start(moment: datetime, offset: int = 0) -> datetime:
    """The first instant (UTC) of the month ``offset`` months after ``moment``'s month."""
    index = moment.astimezone(UTC).year * 12 + moment.astimezone(UTC).month - 1 + offset
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(start: datetime) -> str:
    return f"vital_sample_{start:%Y%m}"


def ensure_partitions(connection: Connection, now: datetime, *, ahead: int = 2) -> None:
    """Monthly partitions from last month to ``ahead`` months on (partitioned layout only).

    A partition must exist before rows for its month arrive; rows that find
    none land in the default partition, which is why partitions are made ahead.
    """
    for offset in range(-1, ahead + 1):
        start, end = month_start(now, offset), month_start(now, offset + 1)
        exists = connection.exec_driver_sql(
            f"SELECT to_regclass('{partition_name(start)}')"
        ).scalar()
        if exists:
            continue
        overlapping = connection.execute(
            text(
                "SELECT 1 FROM vital_sample_default WHERE device_time >= :a AND device_time < :b "
                "LIMIT 1"
            ),
            {"a": start, "b": end},
        ).first()
        if overlapping:
            log.warning(
                "timeseries.partition_skipped", month=f"{start:%Y-%m}", reason="rows in default"
            )
            continue
        connection.exec_driver_sql(
            f"CREATE TABLE {partition_name(start)} PARTITION OF vital_sample "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
