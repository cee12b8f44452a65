"""A migrated sample store on SQLite and on PostgreSQL (the partitioned layout, as here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from medhub.db.engine import make_engine
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate


@pytest.fixture(scope="session")
def _sample_engines() -> Iterator[dict[str, Engine]]:
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sample_store(
    request: pytest.FixtureRequest,
    _sample_engines: dict[str, Engine],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SampleStore]:
    backend: str = request.param
    if backend not in _sample_engines:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('samples') / 'samples.db'}"
        else:
            url = request.getfixturevalue("postgres_url")
        engine = make_engine(url)
        migrate(engine)
        _sample_engines[backend] = engine
    engine = _sample_engines[backend]
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM vital_sample")
        connection.exec_driver_sql("DELETE FROM vital_rollup")
    yield SampleStore(engine)


@pytest.fixture
def sqlite_samples(tmp_path: Path) -> Iterator[SampleStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    yield SampleStore(engine)
    engine.dispose()
