"""Partition claims: a devices process skips other partitions' devices only while every
partition is held by a live process, judged from the claims in the resource database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from medhub.config import Settings
from medhub.devices.partition import Claim, Partition, PartitionGate, covered
from medhub.devices.partition_claims import PartitionClaims
from medhub.errors import ConfigurationError, StoreUnavailableError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.metrics import exposition
from medhub.wiring_devices import DeviceComponents, build_devices
from medhub.wiring_metrics import scrape_collector
from tests.scrape import parse, value

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
STALE = timedelta(seconds=20)


def claim(index: int, count: int, age: float = 0.0, who: str = "") -> Claim:
    return Claim(who or f"p{index}of{count}", index, count, T0 - timedelta(seconds=age))


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ([claim(0, 2), claim(1, 2)], True),
        ([claim(0, 1)], True),
        ([claim(0, 2)], False),  # partition 1 is not running: its devices would be lost
        ([claim(0, 2), claim(1, 2, age=21)], False),  # partition 1 went quiet
        ([claim(0, 2), claim(1, 2, age=19)], True),
        ([claim(0, 3), claim(1, 2), claim(1, 3), claim(2, 3)], False),  # N is being changed
        ([claim(0, 3), claim(1, 2, age=60), claim(1, 3), claim(2, 3)], True),  # old one gone
        ([claim(0, 2), claim(0, 2, who="twin"), claim(1, 2)], True),  # a twin: work, not loss
        ([], False),
    ],
)
def test_the_stream_is_covered_only_when_every_partition_is_held_by_a_live_claim(
    claims: list[Claim], expected: bool
) -> None:
    assert (
        covered(claims, Partition(0, claims[0].count if claims else 2), now=T0, stale_after=STALE)
        is expected
    )


def test_a_gate_takes_every_device_until_covered_and_again_after() -> None:
    gate = PartitionGate(Partition(0, 2))
    devices = [f"mon-{n}" for n in range(40)]
    assert all(gate.owns(d) for d in devices)
    gate.covered = True
    mine = [d for d in devices if gate.owns(d)]
    assert 0 < len(mine) < len(devices)
    gate.covered = False
    assert all(gate.owns(d) for d in devices)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def claims_of(
    store: SqlResourceStore, clock: Clock, index: int, count: int, prefix: str = "devices"
) -> PartitionClaims:
    return PartitionClaims(
        store.session,
        client_id=f"medhub-devices-{index}-of-{count}",
        topic_prefix=prefix,
        partition=Partition(index, count),
        clock=clock,
        stale_after=STALE,
    )


def test_claims_renewed_in_the_database_cover_the_stream_while_all_are_live(
    store: SqlResourceStore,
) -> None:
    clock = Clock()
    first, second = claims_of(store, clock, 0, 2), claims_of(store, clock, 1, 2)
    assert first.renew() is False  # alone: partition 1 unknown
    assert second.renew() is True
    assert first.renew() is True
    clock.now += timedelta(seconds=30)  # the second process stopped renewing (it died)
    assert first.renew() is False
    assert second.renew() is True  # it is back
    second.release()  # a clean stop withdraws the claim at once
    assert first.renew() is False


def test_claims_of_another_topic_prefix_do_not_count(store: SqlResourceStore) -> None:
    clock = Clock()
    ward_a = claims_of(store, clock, 0, 2, prefix="ward-a")
    assert claims_of(store, clock, 1, 2, prefix="ward-b").renew() is False
    assert ward_a.renew() is False


def test_changing_n_replica_by_replica_never_skips_a_device(store: SqlResourceStore) -> None:
    clock = Clock()
    old = [claims_of(store, clock, k, 2) for k in range(2)]
    assert [c.renew() for c in old] == [False, True] and old[0].renew()
    old[0].release()  # pod 0 restarts with N=3
    new = [claims_of(store, clock, 0, 3)]
    assert new[0].renew() is False and old[1].renew() is False  # mixed N: take everything
    old[1].release()
    new += [claims_of(store, clock, k, 3) for k in (1, 2)]
    assert [c.renew() for c in new] == [False, False, True]
    assert all(c.renew() for c in new)


def covered_gauge(store: SqlResourceStore, parts: DeviceComponents) -> float:
    """``medhub_mqtt_partition_covered`` as ``/metrics`` shows it for this process."""
    samples = parse(exposition(scrape_collector(store=store, mqtt=parts.mqtt)).decode())
    assert value(samples, "medhub_mqtt_messages_skipped_total") == 0
    return value(samples, "medhub_mqtt_partition_covered")


def test_the_wiring_gates_the_decoder_on_the_renewed_claims(sqlite_store: SqlResourceStore) -> None:
    settings = Settings(
        database_url="sqlite://",
        mqtt_url="mqtt://127.0.0.1:1883",
        mqtt={"partition": "medhub-devices-0/1", "client_id": "medhub-devices-0"},
        devices={"spool_path": ""},
    )
    parts = build_devices(settings, sqlite_store)
    assert parts.mqtt is not None and parts.partition_gate is not None
    assert parts.mqtt.options.partition is parts.partition_gate
    assert parts.partition_gate.covered is False
    assert covered_gauge(sqlite_store, parts) == 0.0
    assert parts.renew_partition_claim() is True  # the only partition of one: covered
    assert parts.partition_gate.covered is True
    assert covered_gauge(sqlite_store, parts) == 1.0  # what an operator alerts on


def test_a_claim_that_cannot_be_renewed_opens_the_gate_to_every_device(
    sqlite_store: SqlResourceStore,
) -> None:
    settings = Settings(
        database_url="sqlite://",
        mqtt_url="mqtt://127.0.0.1:1883",
        mqtt={"partition": "0/1"},
        devices={"spool_path": ""},
    )
    parts = build_devices(settings, sqlite_store)
    assert parts.renew_partition_claim() is True
    assert parts.partition_claims is not None

    def broken() -> None:
        raise StoreUnavailableError("the resource database failed: connection refused")

    parts.partition_claims.renew = broken  # type: ignore[method-assign,assignment]
    assert parts.renew_partition_claim() is False
    assert parts.partition_gate is not None and parts.partition_gate.covered is False


def test_a_partition_setting_that_does_not_parse_stops_the_start(
    sqlite_store: SqlResourceStore,
) -> None:
    settings = Settings(
        database_url="sqlite://", mqtt_url="mqtt://127.0.0.1:1883", mqtt={"partition": "2/2"}
    )
    with pytest.raises(ConfigurationError, match="0 to 1"):
        build_devices(settings, sqlite_store)
