"""Who is on a user's units, and their latest vital signs: the census the dashboards show.

A unit's census is the patients with a current Encounter (in-progress,
arrived, triaged, on leave) located on the unit: on the ward itself or on a
room or bed under it (HL7 PV1-3 maps to a Location chain bed -> room -> ward,
each ``partOf`` the next). So the census is found from the ward down, in a few
searches per unit rather than by testing every inpatient of the hospital:
the ward's Location (``name:exact``, physical type ``wa``), the locations
under it, then the Encounters at any of them with their Patients
(``_include``). Each patient is still checked with
:meth:`~medhub.api.patient_access.PatientAccess.visible`, the one authority on
who may see whom. A user with every unit sees every current Encounter (up to
:data:`MAX_PATIENTS`).

Latest vitals come from the time-series store: the last two minutes of
samples for the monitored vitals, and for a vital measured less often (blood
pressure, temperature) the newest minute of the last twelve hours found
through the per-minute rollups, so a census never reads hours of raw samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

from medhub.api.deps import ApiContext
from medhub.api.live import iso
from medhub.api.patient_access import CURRENT_ENCOUNTER
from medhub.api.permissions import Principal
from medhub.fhir.search import parse_search
from medhub.fhir.store import Resources, StoredResource
from medhub.timeseries.sample_store import SampleStore

MAX_PATIENTS: Final = 500
_LOCATION_DEPTH: Final = 3  # ward -> room -> bed (-> a bed's sub-location)
#: The vitals a tile shows, in order (pulse rate stands in for heart rate without an ECG).
TILE_VITALS: Final = (
    "heart-rate",
    "pulse-rate",
    "oxygen-saturation",
    "respiratory-rate",
    "systolic-blood-pressure",
    "diastolic-blood-pressure",
    "body-temperature",
)
RECENT: Final = timedelta(minutes=2)
LOOKBACK: Final = timedelta(hours=12)


@dataclass
class PatientSummary:
    """One patient as a census tile or table row."""

    id: str
    name: str
    mrn: str
    age: str
    gender: str
    bed: str
    units: list[str] = field(default_factory=list)
    vitals: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _search(resources: Resources, resource_type: str, params: list[tuple[str, str]]) -> Any:
    query = parse_search(resource_type, params)
    query.with_total = False
    return resources.search(query)


def patient_name(resource: dict[str, Any]) -> str:
    """``FAMILY, Given`` from the official (else first) HumanName."""
    names = resource.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = str(name.get("family", "")).strip()
    given = " ".join(str(g) for g in name.get("given", []))
    text = ", ".join(part for part in (family.upper(), given.title()) if part)
    return text or str(name.get("text", "")) or f"Patient {resource.get('id', '')}"


def medical_record_number(resource: dict[str, Any]) -> str:
    identifiers = resource.get("identifier") or []
    for identifier in identifiers:
        codes = {c.get("code") for c in (identifier.get("type") or {}).get("coding", [])}
        if "MR" in codes and identifier.get("value"):
            return str(identifier["value"])
    return str(identifiers[0].get("value", "")) if identifiers else ""


def age_of(birth: object, today: date) -> str:
    if not isinstance(birth, str) or len(birth) < 4:
        return ""
    try:
        born = date.fromisoformat(birth if len(birth) == 10 else f"{birth[:4]}-07-01")
    except ValueError:
        return ""
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return f"{years} y"


def summary(patient: dict[str, Any], *, bed: str = "", today: date) -> PatientSummary:
    gender = str(patient.get("gender", ""))
    return PatientSummary(
        id=str(patient.get("id", "")),
        name=patient_name(patient),
        mrn=medical_record_number(patient),
        age=age_of(patient.get("birthDate"), today),
        gender={"male": "M", "female": "F", "other": "O", "unknown": "U"}.get(gender, ""),
        bed=bed,
    )


def bed_of(encounter: dict[str, Any]) -> str:
    """The current location's display (the PV1-3 path), facility left out."""
    places = [p for p in encounter.get("location") or [] if isinstance(p, dict)]
    active = [p for p in places if p.get("status") in (None, "active")] or places
    display = str(((active[-1] if active else {}).get("location") or {}).get("display", ""))
    parts = [p.strip() for p in display.split(",") if p.strip()]
    return " ".join(parts[1:] if len(parts) > 1 else parts)


def _unit_locations(resources: Resources, unit: str) -> set[str]:
    """The ward named ``unit`` and every Location under it."""
    wards = [
        s.id
        for s in _search(resources, "Location", [("name:exact", unit), ("_count", "100")]).resources
        if "wa" in {c.get("code") for c in (s.resource.get("physicalType") or {}).get("coding", [])}
    ]
    found, frontier = set(wards), list(wards)
    for _ in range(_LOCATION_DEPTH):
        if not frontier:
            break
        children = _search(
            resources,
            "Location",
            [("partof", ",".join(f"Location/{i}" for i in frontier)), ("_count", "1000")],
        ).resources
        frontier = [c.id for c in children if c.id not in found]
        found.update(frontier)
    return found


def _encounters(
    resources: Resources, locations: Iterable[str] | None
) -> tuple[list[StoredResource], dict[str, StoredResource]]:
    params = [
        ("status", CURRENT_ENCOUNTER),
        ("_include", "Encounter:subject"),
        ("_count", str(MAX_PATIENTS)),
    ]
    if locations is not None:
        ids = sorted(locations)
        if not ids:
            return [], {}
        params.append(("location", ",".join(f"Location/{i}" for i in ids)))
    result = _search(resources, "Encounter", params)
    patients = {p.id: p for p in result.included if p.resource_type == "Patient"}
    return list(result.resources), patients


def census(context: ApiContext, principal: Principal, *, today: date) -> list[PatientSummary]:
    """The patients on the principal's units (every current inpatient for "all units")."""
    units = principal.care_units if principal.unit_bound else None
    found: dict[str, PatientSummary] = {}
    with context.store.unit_of_work() as resources:
        if units is None:
            encounters, patients = _encounters(resources, None)
        else:
            locations: set[str] = set()
            for unit in sorted(units):
                locations |= _unit_locations(resources, unit)
            encounters, patients = _encounters(resources, locations)
    for encounter in encounters:
        reference = str((encounter.resource.get("subject") or {}).get("reference", ""))
        patient = patients.get(reference.removeprefix("Patient/"))
        if patient is None or patient.id in found:
            continue
        if context.access is not None and not context.access.visible(principal, patient.id):
            continue
        entry = summary(patient.resource, bed=bed_of(encounter.resource), today=today)
        if context.access is not None:
            entry.units = sorted(context.access.units_of(patient.id))
        found[patient.id] = entry
    return sorted(found.values(), key=lambda p: (p.bed or "~", p.name))


def _reading(value: float, unit: str, time: datetime) -> dict[str, Any]:
    return {"value": value, "unit": unit, "time": iso(time)}


def latest_vitals(samples: SampleStore, patient_id: str, *, now: datetime) -> dict[str, Any]:
    """The newest reading of each tile vital (see the module docstring for how)."""
    latest: dict[str, dict[str, Any]] = {}
    until = now + timedelta(minutes=1)  # a device clock slightly ahead still counts
    for record in samples.patient_samples(
        patient_id, since=now - RECENT, until=until, limit=20_000
    ):
        if record.vital in TILE_VITALS:
            latest[record.vital] = _reading(record.value, record.unit, record.corrected_time)
    for vital in TILE_VITALS:
        if vital in latest or (vital == "pulse-rate" and "heart-rate" in latest):
            continue
        buckets = samples.patient_buckets(
            patient_id, vital, since=now - LOOKBACK, until=until, seconds=60
        )
        if not buckets:
            continue
        start = buckets[-1].start
        rows = samples.patient_samples(
            patient_id, since=start, until=start + timedelta(seconds=60), vital=vital
        )
        if rows:
            latest[vital] = _reading(rows[-1].value, rows[-1].unit, rows[-1].corrected_time)
    return latest


#: A tile's cells: key, label, unit shown, and the vitals behind it (first found wins; BP is two).
CELLS: Final[tuple[tuple[str, str, str, tuple[str, ...]], ...]] = (
    ("hr", "HR", "/min", ("heart-rate", "pulse-rate")),
    ("spo2", "SpO₂", "%", ("oxygen-saturation",)),
    ("rr", "RR", "/min", ("respiratory-rate",)),
    ("bp", "BP", "mmHg", ("systolic-blood-pressure", "diastolic-blood-pressure")),
    ("temp", "Temp", "°C", ("body-temperature",)),
)
#: Which cell an alert on a vital colours.
CELL_OF: Final = {vital: key for key, _l, _u, vitals in CELLS for vital in vitals} | {
    "mean-blood-pressure": "bp"
}
_RANK: Final = {"high": 3, "medium": 2, "low": 1}


def _number(vital: str, value: float) -> str:
    return f"{value:.1f}" if vital == "body-temperature" else f"{value:.0f}"


def tile_cells(
    vitals: dict[str, dict[str, Any]], alerts: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """What each cell of a tile shows: value text, time of the reading, alarm severity.

    The page's script redraws the same cells from ``vitals.update`` events with
    the same rules, so the server's first paint and the live updates agree.
    """
    worst: dict[str, str] = {}
    for alert in alerts or []:
        key = CELL_OF.get(str(alert.get("vital")))
        severity = str(alert.get("severity", ""))
        if key and _RANK.get(severity, 0) > _RANK.get(worst.get(key, ""), 0):
            worst[key] = severity
    cells = []
    for key, label, unit, names in CELLS:
        text, time = "–", ""
        if key == "bp":
            systolic, diastolic = vitals.get(names[0]), vitals.get(names[1])
            if systolic is not None:
                text = _number(names[0], systolic["value"])
                text += f"/{_number(names[1], diastolic['value'])}" if diastolic else ""
                time = systolic["time"]
        else:
            reading = next((vitals[n] for n in names if n in vitals), None)
            if reading is not None:
                text, time = _number(names[0], reading["value"]), reading["time"]
        cells.append(
            {
                "key": key,
                "label": label,
                "unit": unit,
                "text": text,
                "time": time,
                "severity": worst.get(key, ""),
            }
        )
    return cells
