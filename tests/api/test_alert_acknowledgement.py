"""An acknowledgement in the alerts API reaches the running detector, and the nurse notices.

SpO2 hovering around the 90 % limit: without an acknowledgement every
crossing is a new alert (a new page); once the nurse has acknowledged it, a
re-crossing within the silence period keeps her acknowledged alert open
instead, and it resolves once SpO2 has stayed in range for that long.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from medhub.api.app import create_app
from medhub.api.deps import ApiContext, ComponentHealth
from medhub.cds.alert_store import AlertService
from medhub.cds.vital_watch import VitalWatch
from medhub.config import Settings
from medhub.db.outbox import OutboxEventRow
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.records import SampleRecord
from medhub.wiring_alerts import build_alerts

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
SILENCE = timedelta(seconds=120)


@dataclass
class Ward:
    client: TestClient
    watch: VitalWatch
    service: AlertService
    second: int = 0

    def spo2(self, value: float, seconds: int) -> None:
        """``seconds`` samples of ``value`` at 1 Hz, fed as ingest would."""
        records = []
        for _ in range(seconds):
            at = T0 + timedelta(seconds=self.second)
            records.append(
                SampleRecord("mon-s", "oxygen-saturation", "", at, at, at, value, "%", "p-1")
            )
            self.second += 1
        self.watch(records)

    def alerts(self, state: str = "active") -> list[dict[str, object]]:
        body = self.client.get("/api/v1/alerts", params={"state": state}).json()
        alerts: list[dict[str, object]] = body["alerts"]
        return alerts

    def topics(self) -> list[str]:
        with self.service.store.session() as session:
            rows = session.scalars(select(OutboxEventRow).order_by(OutboxEventRow.id))
            return [row.topic for row in rows]


@pytest.fixture
def ward(store: SqlResourceStore) -> Iterator[Ward]:
    service = AlertService(store)
    watch = VitalWatch(service, ack_silence=SILENCE)
    service.acknowledge_listeners.append(watch.acknowledged)  # as wiring_alerts does
    context = ApiContext(
        store=store, health_checks={"db": lambda: ComponentHealth("up")}, alerts=service
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield Ward(client, watch, service)


def desaturate_twice(ward: Ward, *, acknowledge: bool) -> None:
    ward.spo2(97, 10)
    ward.spo2(88, 20)  # below 90 for 15 s: the low alarm starts (on-delay)
    [alert] = ward.alerts()
    if acknowledge:
        answer = ward.client.post(
            f"/api/v1/alerts/{alert['alert_id']}/acknowledge", json={"by": "Practitioner/n1"}
        )
        assert answer.status_code == 200, answer.text
    ward.spo2(95, 10)  # back above 90 + 2 (hysteresis): the alarm ends
    ward.spo2(88, 20)  # and comes back within the 120 s silence


def test_without_an_acknowledgement_each_crossing_pages_again(ward: Ward) -> None:
    desaturate_twice(ward, acknowledge=False)
    assert ward.topics() == ["alert.raised", "alert.resolved", "alert.raised"]
    assert [a["state"] for a in ward.alerts()] == ["raised"]


def test_after_an_acknowledgement_a_recrossing_does_not_page_again(ward: Ward) -> None:
    desaturate_twice(ward, acknowledge=True)
    assert ward.topics() == ["alert.raised", "alert.acknowledged"]
    [alert] = ward.alerts()
    assert (alert["state"], alert["acknowledged_by"]) == ("acknowledged", "Practitioner/n1")
    ward.spo2(97, 119)  # in range, but not yet for the whole silence period
    assert ward.topics() == ["alert.raised", "alert.acknowledged"]
    ward.spo2(97, 2)
    assert ward.topics() == ["alert.raised", "alert.acknowledged", "alert.resolved"]
    [resolved] = ward.alerts("resolved")
    # resolved when SpO2 came back (the held END's own time), not when the silence ran out
    assert resolved["resolved_at"] == "2026-11-21T10:01:00.000000Z"
    assert ward.alerts() == []


def test_a_recrossing_after_the_silence_is_a_new_alert(ward: Ward) -> None:
    ward.spo2(97, 10)
    ward.spo2(88, 20)
    [alert] = ward.alerts()
    ward.client.post(f"/api/v1/alerts/{alert['alert_id']}/acknowledge", json={"by": "n1"})
    ward.spo2(95, 130)
    ward.spo2(88, 20)
    assert ward.topics() == [
        "alert.raised",
        "alert.acknowledged",
        "alert.resolved",
        "alert.raised",
    ]


def test_acknowledging_an_alert_the_detector_no_longer_has_is_harmless(ward: Ward) -> None:
    ward.spo2(97, 10)
    ward.spo2(80, 2)  # critical low: raised at once
    ward.spo2(97, 2)  # and resolved
    [alert] = ward.alerts("resolved")
    answer = ward.client.post(f"/api/v1/alerts/{alert['alert_id']}/acknowledge", json={"by": "n1"})
    assert answer.status_code == 409  # already resolved: the nurse is told so


def test_an_acknowledgement_in_an_api_process_reaches_the_devices_process(
    store: SqlResourceStore,
) -> None:
    """``serve --role api`` and ``--role devices`` apart: the API's alert service has no
    detector to tell, so the devices process catches up from the database on its timer."""
    devices = build_alerts(Settings(database_url="sqlite://"), store)
    devices.watch = VitalWatch(devices.service, ack_silence=SILENCE)
    api_service = AlertService(store)  # the api process's own, with no detector behind it
    context = ApiContext(
        store=store, health_checks={"db": lambda: ComponentHealth("up")}, alerts=api_service
    )
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        ward = Ward(client, devices.watch, devices.service)
        ward.spo2(97, 10)
        ward.spo2(88, 20)
        [alert] = ward.alerts()
        answer = client.post(f"/api/v1/alerts/{alert['alert_id']}/acknowledge", json={"by": "n1"})
        assert answer.status_code == 200, answer.text
        assert devices.catch_up_acknowledgements() == 1  # what the devices' check round runs
        assert devices.catch_up_acknowledgements() == 0  # told once
        ward.spo2(95, 10)
        ward.spo2(88, 20)  # back within the silence: the acknowledged alert stays, no new page
        assert ward.topics() == ["alert.raised", "alert.acknowledged"]
        assert [a["state"] for a in ward.alerts()] == ["acknowledged"]
