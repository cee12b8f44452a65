"""Alert changes reported as IHE PCD-04 through the outbound HL7 queue, in the change's transaction.

The alert service (cds) knows nothing of HL7: the wiring's :class:`Pcd04Reporter`
is its ``on_change`` hook. Here the two are put together as ``build_alerts`` does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medhub.adapters.mllp_sender import MllpSender
from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.alert_store import AlertRow, AlertService
from medhub.cds.alerts import Alert
from medhub.cds.detector import StreamKey
from medhub.config import Hl7DestinationSettings, Settings
from medhub.errors import ConfigurationError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import Message, decode_er7, parse_er7
from medhub.hl7.outbound_queue import OutboundMessage, list_messages
from medhub.hl7.pcd01_builder import HierarchicDesignator, Pcd01Header
from medhub.hl7.pcd04_builder import MDC_EVT_ALARM, UNIDENTIFIED_PATIENT, build_pcd04_oru
from medhub.wiring_alerts import Pcd04Reporter, alert_report, pcd04_reporter
from tests.adapters.test_mllp_sender import Partner, all_settled, destination, until
from tests.cds.test_alerts import T0, edge

PATIENT = {
    "resourceType": "Patient",
    "identifier": [
        {
            "system": "urn:oid:1.2.840.114350",
            "value": "MRN-1",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
        },
        {"system": "urn:medhub:assigning-authority:NHS", "value": "987", "use": "usual"},
        {"system": "urn:medhub:assigning-authority:OLD", "value": "X1", "use": "old"},
    ],
    "name": [{"family": "DOE", "given": ["JANE", "Q"], "use": "official"}],
    "birthDate": "1970-05-17",
    "gender": "female",
}


def reporter(to: str = "alert-manager") -> Pcd04Reporter:
    numbers = itertools.count(1)
    return Pcd04Reporter(to, clock=lambda: T0, control_id=lambda: f"R40-{next(numbers)}")


def service(store: SqlResourceStore, hook: Pcd04Reporter | None = None) -> AlertService:
    return AlertService(store, clock=lambda: T0, on_change=hook or reporter())


def queued(store: SqlResourceStore) -> list[OutboundMessage]:
    with store.session() as session:
        return list_messages(session)


def read(message: OutboundMessage) -> Message:
    return parse_er7(decode_er7(message.message))


def facet(message: Message, number: int) -> str:
    return message.all("OBX")[number - 1].value(5)


@pytest.fixture
def patient_store(store: SqlResourceStore) -> Iterator[SqlResourceStore]:
    with store.unit_of_work() as unit:
        unit.create(PATIENT, resource_id="p1")
    yield store


def test_each_change_queues_one_report_in_order(patient_store: SqlResourceStore) -> None:
    store = patient_store
    alerts = service(store)
    [raised] = alerts.apply([edge(Transition.START)])
    [escalated] = alerts.escalate_due(now=T0 + timedelta(minutes=3), after=timedelta(minutes=2))
    acked = alerts.acknowledge(raised.id, by="Practitioner/nurse-7", now=T0 + timedelta(minutes=4))
    alerts.acknowledge(raised.id, by="Practitioner/other", now=T0 + timedelta(minutes=5))  # no-op
    [resolved] = alerts.apply([edge(Transition.END, at=T0 + timedelta(minutes=6), value=120.0)])
    assert (escalated.state, acked.state, resolved.state) == (
        "escalated",
        "acknowledged",
        "resolved",
    )

    rows = queued(store)
    assert [(r.destination, r.control_id, r.status) for r in rows] == [
        ("alert-manager", f"R40-{n}", "pending") for n in (1, 2, 3, 4)
    ]
    messages = [read(r) for r in rows]
    assert {m.message_type for m in messages} == {("ORU", "R40", "ORU_R40")}
    assert {m.get("OBR-3.1") for m in messages} == {raised.id}, "one alert, one identifier"
    assert [(facet(m, 3), facet(m, 4), facet(m, 5)) for m in messages] == [
        ("start", "active", "enabled"),
        ("update", "active", "enabled"),
        ("update", "active", "alert-acknowledged"),
        ("end", "inactive", "alert-acknowledged"),
    ]
    assert [m.get("OBR-29.2.1") for m in messages] == ["", raised.id, raised.id, raised.id]
    assert [m.all("OBX")[0].raw(14) for m in messages] == [
        "20261122030000+0000",
        "20261122030300+0000",
        "20261122030400+0000",
        "20261122030600+0000",
    ]
    start, *_, end = messages
    assert (facet(start, 1), start.all("OBX")[0].raw(3)) == (
        "heart-rate critical high",
        "196648^MDC_EVT_HI^MDC",
    )
    assert start.all("OBX")[0].raw(8) == "HH~PH~SP"
    assert start.all("OBX")[1].raw(3) == "147842^MDC_ECG_HEART_RATE^MDC"
    assert (facet(start, 2), start.all("OBX")[1].raw(7)) == ("152.0", "<140.0")
    assert (facet(end, 2), end.get("OBR-8")) == ("120.0", "20261122030600+0000")
    assert facet(start, 6) == "PH"


def test_the_pid_comes_from_the_stored_patient(patient_store: SqlResourceStore) -> None:
    service(patient_store).apply([edge(Transition.START)])
    [row] = queued(patient_store)
    pid = read(row).segment("PID")
    assert pid is not None
    assert pid.raw(3) == "MRN-1^^^&1.2.840.114350&ISO^MR~987^^^NHS", (
        "the old identifier is left out"
    )
    assert pid.raw(5) == "DOE^JANE^Q^^^^L"
    assert (pid.raw(7), pid.raw(8)) == ("19700517", "F")


def test_a_patient_not_stored_is_named_by_medhubs_id(store: SqlResourceStore) -> None:
    service(store).apply([edge(Transition.START)])
    [row] = queued(store)
    pid = read(row).segment("PID")
    assert pid is not None and pid.raw(3) == "p1^^^MEDHUB^PI"


def test_an_alert_bound_to_nobody_is_still_reported(store: SqlResourceStore) -> None:
    unbound = StreamKey("oxygen-saturation", "0123456789abcdef", "spo2", None)
    service(store).apply(
        [edge(Transition.START, key=unbound, condition=Condition.SIGNAL_LOST, value=float("nan"))]
    )
    [row] = queued(store)
    message = read(row)
    assert (message.get("PID-3"), message.get("PID-5"), message.get("PV1-2")) == ("", "", "U")
    first, source = message.all("OBX")[:2]
    assert (first.raw(3), first.raw(8), first.raw(18)) == (
        "196616^MDC_EVT_ALARM^MDC",
        "PL~ST",
        "0123456789ABCDEF^EUI-64",
    )
    assert (source.raw(3), source.raw(5)) == (
        "68480^MDC_ATTR_ALERT_SOURCE^MDC",
        "150456^MDC_PULS_OXIM_SAT_O2^MDC",
    )


def test_a_rolled_back_change_leaves_no_report(store: SqlResourceStore) -> None:
    report = reporter()

    def failing_later(session: Session, alert: Alert) -> None:
        report(session, alert)  # the PCD-04 is queued, then the transaction fails
        if alert.condition is Condition.RATE:
            raise RuntimeError("the store went away mid-batch")

    alerts = AlertService(store, clock=lambda: T0, on_change=failing_later)
    with pytest.raises(RuntimeError):
        alerts.apply([edge(Transition.START), edge(Transition.START, condition=Condition.RATE)])
    assert queued(store) == []
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(AlertRow)) == 0


def test_without_the_setting_there_is_no_hook_and_a_wrong_name_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDHUB_ALERTS__PCD04_DESTINATION", "alert-manager")
    assert Settings().alerts.pcd04_destination == "alert-manager"
    monkeypatch.delenv("MEDHUB_ALERTS__PCD04_DESTINATION")
    partner = Hl7DestinationSettings(name="alert-manager", host="127.0.0.1", port=2575)
    assert pcd04_reporter(Settings(hl7_destinations=[partner])) is None
    chosen = pcd04_reporter(
        Settings(hl7_destinations=[partner], alerts={"pcd04_destination": "alert-manager"})
    )
    assert chosen is not None and chosen.destination == "alert-manager"
    with pytest.raises(ConfigurationError, match="'pager' is not one of the HL7 destinations"):
        pcd04_reporter(Settings(hl7_destinations=[partner], alerts={"pcd04_destination": "pager"}))


def test_the_report_reaches_a_loopback_alert_manager_and_is_marked_sent(
    sqlite_store: SqlResourceStore,
) -> None:
    store = sqlite_store
    alerts = AlertService(store, on_change=Pcd04Reporter("cis"))  # real clock, random MSH-10
    [raised] = alerts.apply([edge(Transition.START, at=datetime.now(UTC))])
    alerts.acknowledge(raised.id, by="Practitioner/nurse-7")
    control_ids = [m.control_id for m in queued(store)]
    partner = Partner()

    async def main() -> None:
        port = await partner.start()
        sender = MllpSender(destination(port), store.session)
        await sender.start()
        try:
            await until(store, all_settled)
        finally:
            await sender.close(grace_seconds=5)
            await partner.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert partner.received == control_ids
    final = queued(store)
    assert [(m.status, m.ack_code) for m in final] == [("sent", "CA"), ("sent", "CA")]
    assert all(m.sent_at is not None for m in final)


def test_device_and_news2_alerts_are_reported_with_their_own_event_and_text() -> None:
    occlusion = Alert(
        "d1", None, "pump-1", "", "device", Condition.DEVICE_TECHNICAL, Priority.HIGH,
        "raised", float("nan"), float("nan"), "", T0, source_alarm="a-7",
        alarm_code="OCCL", event_code="196800", text="occlusion downstream",
    )  # fmt: skip
    report = alert_report(occlusion, UNIDENTIFIED_PATIENT)
    assert (report.kind, report.event.code, report.event.text, report.text) == (
        "ST",
        "196800",
        "OCCL",
        "occlusion downstream",
    )
    news2 = Alert(
        "n1", "p1", "medhub-news2", "", "news2", Condition.NEWS2_HIGH, Priority.HIGH,
        "raised", 8.0, 7.0, "{score}", T0, text="NEWS2 8 (high risk): urgent or emergency response",
    )  # fmt: skip
    report = alert_report(news2, UNIDENTIFIED_PATIENT)
    assert (report.kind, report.event, report.value) == ("SP", MDC_EVT_ALARM, 8.0)
    header = Pcd01Header(HierarchicDesignator("MEDHUB"), HierarchicDesignator("AM"))
    for alert in (occlusion, news2):
        message = build_pcd04_oru(
            alert_report(alert, UNIDENTIFIED_PATIENT), header=header, control_id="c", now=T0
        )
        assert b"ORU^R40" in message
