"""Store-and-forward: PostgreSQL cut off mid-stream, then back; every sample stored exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from medhub.db.engine import make_engine
from medhub.errors import StoreUnavailableError
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from medhub.timeseries.spool import SpoolingWriter
from tests.tcp_proxy import TcpProxy

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def batch(n: int, size: int = 50) -> list[SampleRecord]:
    return [
        SampleRecord(
            device_id=f"mon-{i % 5}",
            vital="heart-rate",
            channel="",
            device_time=T0 + timedelta(seconds=n, milliseconds=i),
            corrected_time=T0 + timedelta(seconds=n, milliseconds=i),
            received_at=T0 + timedelta(seconds=n + 1),
            value=float(60 + i % 40),
            unit="/min",
            patient_id=f"p-{i % 5}",
        )
        for i in range(size)
    ]


@pytest.fixture
def proxied_store(postgres_url: str) -> Iterator[tuple[SampleStore, TcpProxy]]:
    url = make_url(postgres_url)
    direct = make_engine(postgres_url)
    migrate(direct)
    direct.dispose()
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).update_query_dict(
            {"connect_timeout": "2"}
        )
        engine = make_engine(proxied.render_as_string(hide_password=False))
        store = SampleStore(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql("DELETE FROM vital_sample")
            connection.exec_driver_sql("DELETE FROM vital_rollup")
        yield store, proxy
        engine.dispose()


def wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.postgres
def test_samples_written_during_an_outage_arrive_once_in_order(
    proxied_store: tuple[SampleStore, TcpProxy], tmp_path: Path
) -> None:
    store, proxy = proxied_store
    writer = SpoolingWriter(store, tmp_path / "spool.db", retry_initial_seconds=0.05)
    writer.start()
    try:
        for n in range(10):
            writer.write(batch(n))
        assert writer.backlog == (0, 0)
        proxy.cut()  # the database becomes unreachable mid-stream
        for n in range(10, 30):
            writer.write(batch(n))  # accepted: spooled on local disk
        assert writer.backlog[1] == 20 * 50
        writer.write(batch(5))  # a redelivered batch, also spooled
        proxy.restore()
        wait_for(lambda: writer.backlog == (0, 0))
    finally:
        writer.close()
    assert store.count() == 30 * 50
    rows = store.device_samples("mon-0", since=T0 - timedelta(1), until=T0 + timedelta(1))
    assert len({r.device_time for r in rows}) == len(rows) == 30 * 10
    buckets = store.patient_buckets(
        "p-0", "heart-rate", since=T0, until=T0 + timedelta(minutes=1), seconds=60
    )
    assert sum(b.count for b in buckets) == 30 * 10  # rollups counted every sample once


def test_the_spool_survives_a_restart_of_the_box(tmp_path: Path) -> None:
    class Down:
        def write(self, records: object) -> int:
            raise StoreUnavailableError(f"central store unreachable ({records!r:.20})")

    first = SpoolingWriter(Down(), tmp_path / "spool.db")
    first.write(batch(0))
    first.write(batch(1))
    first.close()
    samples_engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(samples_engine)
    store = SampleStore(samples_engine)
    second = SpoolingWriter(store, tmp_path / "spool.db")
    assert second.backlog == (2, 100)
    assert second.forward_once() and second.forward_once() and not second.forward_once()
    assert store.count() == 100
    second.write(batch(2))  # spool empty again: straight through
    assert store.count() == 150 and second.backlog == (0, 0)
    second.close()
