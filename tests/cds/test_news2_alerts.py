"""NEWS2 from stored vitals and charted Observations, and the alerts it raises, on real stores.

Resources on SQLite, PostgreSQL and MariaDB (the ``store`` fixture); samples in
SQLite, or in the same PostgreSQL schema when the resources are there.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from medhub.cds.alarm_codes import Condition
from medhub.cds.alert_store import AlertService
from medhub.cds.news2_alerts import News2Watch
from medhub.cds.news2_service import News2Service
from medhub.db.engine import make_engine
from medhub.db.outbox import OutboxEventRow
from medhub.errors import NotFoundError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.timeseries.records import SampleRecord
from medhub.timeseries.sample_store import SampleStore
from medhub.timeseries.schema import migrate
from tests.conftest import POSTGRES_URL

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
AIR_OR_OXYGEN = ("urn:medhub:news2", "air-or-oxygen")
NORMAL = {
    "respiratory-rate": 16.0,
    "oxygen-saturation": 97.0,
    "systolic-blood-pressure": 125.0,
    "heart-rate": 72.0,
    "body-temperature": 37.0,
}
UNITS = {
    "respiratory-rate": "/min",
    "oxygen-saturation": "%",
    "systolic-blood-pressure": "mm[Hg]",
    "heart-rate": "/min",
    "body-temperature": "Cel",
}


@pytest.fixture(scope="module")
def pg_samples_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL schema of its own for samples (never the resource schema: the
    migration test compares that one with the models)."""
    base = request.getfixturevalue("postgres_url")
    schema = f"medhub_samples_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def samples(
    store: SqlResourceStore, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[SampleStore]:
    """Samples in PostgreSQL when the resources are there, else in SQLite."""
    if store.engine.dialect.name == "postgresql":
        engine = make_engine(request.getfixturevalue("pg_samples_url"))
    else:
        engine = make_engine(f"sqlite:///{tmp_path / 'samples.db'}")
    migrate(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM vital_sample")
        connection.exec_driver_sql("DELETE FROM vital_rollup")
    yield SampleStore(engine)
    engine.dispose()


@dataclass
class Ward:
    store: SqlResourceStore
    samples: SampleStore
    watch: News2Watch
    patient: str

    def vitals(self, at: datetime, **changes: float) -> None:
        values = {**NORMAL, **{k.replace("_", "-"): v for k, v in changes.items()}}
        records = [
            SampleRecord("mon-7", vital, "", at, at, at, float(value), UNITS[vital], self.patient)
            for vital, value in values.items()
        ]
        self.samples.write(records)
        self.watch(records)

    def chart(self, at: datetime, code: tuple[str, str], **fields: Any) -> str:
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": code[0], "code": code[1]}]},
            "subject": {"reference": f"Patient/{self.patient}"},
            "effectiveDateTime": at.isoformat(),
            **fields,
        }
        with self.store.unit_of_work() as resources:
            return resources.create(resource).id

    def acvpu(self, at: datetime, level: str) -> str:
        return self.chart(
            at,
            ("urn:medhub:news2", "consciousness"),
            valueCodeableConcept={"coding": [{"system": "urn:medhub:acvpu", "code": level}]},
        )

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        with self.store.session() as session:
            rows = session.scalars(select(OutboxEventRow).order_by(OutboxEventRow.id))
            return [(r.topic, orjson.loads(r.payload)) for r in rows]


@pytest.fixture
def ward(store: SqlResourceStore, samples: SampleStore) -> Ward:
    with store.unit_of_work() as resources:
        patient = resources.create({"resourceType": "Patient", "name": [{"family": "Ward"}]}).id
    service = News2Service(store, samples, max_age=timedelta(hours=1))
    watch = News2Watch(service, AlertService(store), every=timedelta(minutes=1))
    return Ward(store, samples, watch, patient)


def test_news2_from_samples_and_charted_observations(ward: Ward) -> None:
    ward.vitals(T0 - timedelta(minutes=5), heart_rate=115)
    ward.vitals(T0 - timedelta(minutes=90), respiratory_rate=30)  # older: not the latest
    ward.acvpu(T0 - timedelta(minutes=20), "A")
    oxygen = ward.chart(
        T0 - timedelta(minutes=10),
        (LOINC, "3151-8"),
        valueQuantity={"value": 2, "unit": "L/min", "system": "http://unitsofmeasure.org",
                       "code": "L/min"},
    )  # fmt: skip
    temperature = ward.chart(
        T0 - timedelta(minutes=2),
        (LOINC, "8310-5"),
        category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                               "observation-category", "code": "vital-signs"}]}],
        valueQuantity={"value": 101.3, "unit": "[degF]", "system": "http://unitsofmeasure.org",
                       "code": "[degF]"},
    )  # fmt: skip
    result = ward.watch.service.assess(ward.patient, now=T0, require_patient=True)
    assert result.complete
    by = {p.parameter: p for p in result.parameters}
    assert by["pulse"].score == 2 and by["pulse"].reading is not None
    assert by["pulse"].reading.source == "device/mon-7/heart-rate"
    assert by["on_oxygen"].score == 2
    assert by["on_oxygen"].reading and by["on_oxygen"].reading.source == f"Observation/{oxygen}"
    # the charted 38.5 °C is newer than the monitor's 37.0
    assert by["temperature"].reading and by["temperature"].reading.source == (
        f"Observation/{temperature}"
    )
    assert by["temperature"].score == 1
    assert (result.score.total, result.score.risk.value) == (5, "medium")


def test_stale_and_missing_parameters_are_reported(ward: Ward) -> None:
    ward.vitals(T0 - timedelta(minutes=61))
    result = ward.watch.service.assess(ward.patient, now=T0)
    assert set(result.stale) == {"respiratory_rate", "spo2", "systolic_bp", "pulse", "temperature"}
    assert set(result.missing) == {"on_oxygen", "consciousness"}
    assert result.score.total == 0 and not result.complete


def test_an_unknown_patient_is_not_found(ward: Ward) -> None:
    with pytest.raises(NotFoundError):
        ward.watch.service.assess("nobody", now=T0, require_patient=True)


def test_news2_alerts_rise_step_and_resolve_with_the_band(ward: Ward) -> None:
    ward.acvpu(T0 - timedelta(minutes=30), "A")
    ward.chart(
        T0 - timedelta(minutes=30), ("urn:medhub:news2", "air-or-oxygen"), valueBoolean=False
    )
    ward.vitals(T0)
    assert ward.watch.run_due(T0) == []  # NEWS2 0: nothing raised
    # pulse 135 (3), SpO2 93 (2): aggregate 5, medium, raised at the next due run only
    ward.vitals(T0 + timedelta(seconds=10), heart_rate=135, oxygen_saturation=93)
    assert ward.watch.run_due(T0 + timedelta(seconds=30)) == []  # throttled: not yet due
    [raised] = ward.watch.run_due(T0 + timedelta(minutes=1))
    assert (raised.condition, raised.severity, raised.state) == (
        Condition.NEWS2_MEDIUM,
        "medium",
        "raised",
    )
    assert (raised.value, raised.limit, raised.vital, raised.unit) == (5.0, 5.0, "news2", "{score}")
    assert raised.routing_key == "alerts.medium.news2.{score}"
    assert raised.text is not None and raised.text.startswith("NEWS2 5 (medium risk)")
    with ward.store.unit_of_work() as resources:
        assert raised.observation_id is not None and raised.flag_id is not None
        observation = resources.read("Observation", raised.observation_id).resource
    assert observation["code"]["coding"][0]["code"] == "total-score"
    assert observation["valueQuantity"]["value"] == 5
    assert observation["subject"] == {"reference": f"Patient/{ward.patient}"}
    # the nurse charts "responds to voice" (3): aggregate 8, high
    ward.acvpu(T0 + timedelta(minutes=1, seconds=30), "V")
    ward.watch.note(ward.patient)
    changed = ward.watch.run_due(T0 + timedelta(minutes=2))
    assert [(a.condition, a.state) for a in changed] == [
        (Condition.NEWS2_MEDIUM, "resolved"),
        (Condition.NEWS2_HIGH, "raised"),
    ]
    # the monitor is taken off: stale data neither lowers nor ends the alert
    ward.watch.note(ward.patient)
    assert ward.watch.run_due(T0 + timedelta(hours=3)) == []
    # back to normal, all parameters fresh: resolved
    later = T0 + timedelta(hours=3, minutes=1)
    ward.acvpu(later, "A")
    ward.chart(later, AIR_OR_OXYGEN, valueBoolean=False)
    ward.vitals(later)
    [resolved] = ward.watch.run_due(later + timedelta(seconds=1))
    assert (resolved.condition, resolved.state) == (Condition.NEWS2_HIGH, "resolved")
    topics = [(topic, body["condition"]) for topic, body in ward.events()]
    assert topics == [
        ("alert.raised", "news2_medium"),
        ("alert.resolved", "news2_medium"),
        ("alert.raised", "news2_high"),
        ("alert.resolved", "news2_high"),
    ]


def test_a_single_parameter_scoring_3_raises_a_low_medium_alert(ward: Ward) -> None:
    ward.vitals(T0, respiratory_rate=7)  # RR <= 8 scores 3 on its own
    [raised] = ward.watch.run_due(T0)
    assert raised.condition is Condition.NEWS2_LOW_MEDIUM and raised.severity == "medium"
