"""Shared fixtures: a migrated database on each back-end, each test starting empty.

SQLite always runs. PostgreSQL and MariaDB run against the real local servers
(``MEDHUB_TEST_POSTGRES_URL`` / ``MEDHUB_TEST_MYSQL_URL``); each test session
creates its own schema/database and drops it afterwards. On a laptop without a
server those cases skip; with ``MEDHUB_REQUIRE_SERVICES=1`` (CI) they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.engine import make_url

from medhub.db.base import metadata
from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.migrations import upgrade

POSTGRES_URL = os.environ.get(
    "MEDHUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MYSQL_URL = os.environ.get("MEDHUB_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
REQUIRE_SERVICES = os.environ.get("MEDHUB_REQUIRE_SERVICES") == "1"
#: shared/ sits beside the checkout (DEVELOPERS.md); MEDHUB_CORPUS overrides.
CORPUS = Path(
    os.environ.get("MEDHUB_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus")
)


def unavailable(what: str, error: Exception) -> None:
    """Skip on a laptop, fail in CI: a missing server must never turn CI green."""
    message = f"{what} is not reachable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)  # laptop only: CI sets MEDHUB_REQUIRE_SERVICES=1 and fails above


def _probe(url: str, what: str) -> None:
    try:
        probe = create_engine(url)
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
        probe.dispose()
    except Exception as exc:
        unavailable(what, exc)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped at the end."""
    _probe(POSTGRES_URL, "PostgreSQL")
    schema = f"medhub_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A MariaDB/MySQL URL on a fresh database, dropped at the end."""
    _probe(MYSQL_URL, "MariaDB/MySQL")
    database = f"medhub_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    url = make_url(MYSQL_URL).set(database=database)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        admin.dispose()


def _migrated(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine


@pytest.fixture(scope="session")
def _engines() -> Iterator[dict[str, Engine]]:
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


def _clean(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(delete(table))


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def db_engine(
    request: pytest.FixtureRequest,
    _engines: dict[str, Engine],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    """A migrated, empty database on each back-end (SQLite, PostgreSQL, MariaDB)."""
    backend: str = request.param
    if backend not in _engines:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'medhub.db'}"
        elif backend == "postgres":
            url = request.getfixturevalue("postgres_url")
        else:
            url = request.getfixturevalue("mysql_url")
        _engines[backend] = _migrated(url)
    engine = _engines[backend]
    _clean(engine)
    yield engine
    _clean(engine)


@pytest.fixture
def store(db_engine: Engine) -> SqlResourceStore:
    return SqlResourceStore(db_engine)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlResourceStore]:
    """A store on a fresh SQLite file, for tests that need only one back-end."""
    engine = _migrated(f"sqlite:///{tmp_path / 'medhub.db'}")
    yield SqlResourceStore(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared corpus of real HL7 messages and recorded vitals."""
    if not CORPUS.exists():
        pytest.fail(f"the shared corpus is missing at {CORPUS}")
    return CORPUS
