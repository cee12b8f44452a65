"""How one ADT event changes a stored Encounter: status, period and location history (pure).

An ADT feed is a stream of events about one visit (HL7 v2.5.1 §3.3): admit
(A01), transfer (A02), discharge (A03), and the cancellations A11, A12, A13
that undo them. A FHIR Encounter is the visit's state, so each event is folded
into what is stored rather than replacing it:

* ``status`` follows the event (see :mod:`medhub.hl7.encounter_mapping`);
  every change closes the open ``statusHistory`` entry and opens a new one, so
  the history of a visit is readable from the resource itself (FHIR R4
  encounter.html, "statusHistory").
* ``location`` is a history too (FHIR R4 Encounter.location: "the location
  history"): a transfer completes the current bed (its ``period.end`` is the
  transfer time) and appends the new one as ``active``; a discharge completes
  the current one; A12 cancel transfer drops the erroneous entry and reopens
  the location PV1-3 names (v2.5.1 §3.3.12: PV1-3 holds the location before
  the transfer); A13 cancel discharge reopens the last one.
* ``period``: PV1-44/PV1-45 when sent; a discharge without PV1-45 ends at the
  event time; A13 removes the end.
* ``participant``: the roles a message names replace the stored ones of the same
  role; roles it leaves empty are kept (v2.5.1 §2.5.3: empty means no change).

Times are FHIR dateTime strings; every period is kept ``start <= end`` (FHIR
invariant per-1) even when events arrive out of order.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from medhub.errors import ConflictError, Hl7Location, InputError, Issue
from medhub.fhir.dates import parse_fhir_date_range
from medhub.hl7.encounter_mapping import MappedVisit
from medhub.hl7.identity import merge_resource

#: Statuses of a visit that has not ended (FHIR R4 encounter-status).
OPEN_STATUSES: Final = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave"})
_CURRENT_LOCATION: Final = frozenset({"active", "planned", "reserved"})
_SPECIAL: Final = frozenset({"period", "status", "location", "participant", "hospitalization"})


def _start(value: str) -> Any:
    return parse_fhir_date_range(value)[0]


def not_before(value: str, floor: str | None) -> str:
    """``value``, or ``floor`` when ``value`` is earlier (keeps ``start <= end``)."""
    if floor is not None and _start(value) < _start(floor):
        return floor
    return value


def _check_subject(existing: dict[str, Any], subject: dict[str, Any]) -> None:
    stored = (existing.get("subject") or {}).get("reference")
    if stored and stored != subject["reference"]:
        location = Hl7Location("PV1", 1, 19)
        text = (
            f"the visit (PV1-19) belongs to {stored}, not to {subject['reference']} named "
            "by PID-3; move or merge it first (A44/A40)"
        )
        issue = Issue(text, code="conflict", location=location, hl7_error_code=205)
        raise ConflictError(text, [issue])


def _period(encounter: dict[str, Any], visit: MappedVisit) -> None:
    period = dict(encounter.get("period") or {})
    if visit.admitted_at:
        period["start"] = visit.admitted_at
    if visit.event == "A13":
        period.pop("end", None)
    elif visit.discharged_at:
        period["end"] = visit.discharged_at
    elif visit.event == "A03" and "end" not in period:
        period["end"] = visit.at
    if "start" in period and "end" in period:
        if parse_fhir_date_range(period["end"])[1] <= _start(period["start"]):
            if visit.discharged_at:
                location = Hl7Location("PV1", 1, 45)
                text = f"PV1-45 discharge {period['end']} is before the admission {period['start']}"
                raise InputError(text, [Issue(text, location=location, hl7_error_code=102)])
            period["end"] = period["start"]
    if period:
        encounter["period"] = period
    else:
        encounter.pop("period", None)


def _status(encounter: dict[str, Any], visit: MappedVisit) -> None:
    current = encounter.get("status")
    new = visit.status or current or visit.initial_status
    if new == current:
        return
    history = encounter.setdefault("statusHistory", [])
    at = visit.at
    if current is None and visit.admitted_at and new != "planned":
        at = visit.admitted_at  # a visit first heard of: its status holds since admission
    if history:
        last = history[-1].setdefault("period", {})
        at = not_before(at, last.get("start"))
        last.setdefault("end", at)
    history.append({"status": new, "period": {"start": at}})
    encounter["status"] = new


def _current(entries: list[dict[str, Any]]) -> int | None:
    for index in range(len(entries) - 1, -1, -1):
        if entries[index].get("status") in _CURRENT_LOCATION:
            return index
    return None


def _reference(entry: dict[str, Any]) -> str | None:
    reference = (entry.get("location") or {}).get("reference")
    return reference if isinstance(reference, str) else None


def _close(entry: dict[str, Any], at: str) -> None:
    period = entry.setdefault("period", {})
    entry["status"] = "completed"
    period.setdefault("end", not_before(at, period.get("start")))


def _reopen(entry: dict[str, Any], status: str = "active") -> None:
    entry["status"] = status
    (entry.get("period") or {}).pop("end", None)


def _move(entries: list[dict[str, Any]], location: dict[str, Any], status: str, at: str) -> None:
    """Make ``location`` the current one: complete the current entry, append the new one."""
    current = _current(entries)
    if current is not None and _reference(entries[current]) == location["reference"]:
        entries[current]["status"] = status
        return
    start = at
    if current is not None:
        start = not_before(at, entries[current].get("period", {}).get("start"))
        _close(entries[current], start)
    entries.append({"location": location, "status": status, "period": {"start": start}})


def _cancel_transfer(entries: list[dict[str, Any]], location: dict[str, Any] | None) -> None:
    """A12: drop the erroneous transfer, reopen the location the patient is back in."""
    if location is None:
        return
    current = _current(entries)
    if current is not None and _reference(entries[current]) == location["reference"]:
        return
    if current is not None:
        del entries[current]
    for entry in reversed(entries):
        if _reference(entry) == location["reference"]:
            _reopen(entry)
            return
    entries.append({"location": location, "status": "active"})


def _locations(
    encounter: dict[str, Any], visit: MappedVisit, location: dict[str, Any] | None
) -> None:
    entries = copy.deepcopy(encounter.get("location") or [])
    status = "planned" if visit.planned_location else "active"
    first_start = visit.admitted_at if not entries and visit.admitted_at else visit.at
    if visit.event == "A12":
        _cancel_transfer(entries, location)
    elif visit.event == "A11":
        current = _current(entries)
        if current is not None:
            _close(entries[current], visit.at)
    else:
        if visit.event == "A13" and _current(entries) is None and entries:
            _reopen(entries[-1], status)
        if location is not None:
            _move(entries, location, status, first_start)
        current = _current(entries)
        if visit.event == "A03" and current is not None:
            _close(entries[current], encounter.get("period", {}).get("end", visit.at))
    if entries:
        encounter["location"] = entries


def _participants(encounter: dict[str, Any], participants: list[dict[str, Any]]) -> None:
    if not participants:
        return

    def role(entry: dict[str, Any]) -> str:
        types = entry.get("type") or [{}]
        codings = types[0].get("coding") or [{}]
        return str(codings[0].get("code", ""))

    sent = {role(p) for p in participants}
    kept = [p for p in encounter.get("participant", []) if role(p) not in sent]
    encounter["participant"] = kept + participants


def next_encounter(
    existing: dict[str, Any] | None,
    visit: MappedVisit,
    *,
    subject: dict[str, Any],
    location: dict[str, Any] | None,
    participants: list[dict[str, Any]],
) -> dict[str, Any]:
    """The Encounter after ``visit``'s event, from the stored one (None: a new visit).

    ``subject``, ``location`` and ``participants`` are the resolved references
    (``{"reference": "Patient/…"}``, an Encounter.location.location value, and
    Encounter.participant entries). Raises :class:`ConflictError` when the stored
    visit belongs to another patient, :class:`InputError` when PV1-45 is before
    the admission.
    """
    base = {k: v for k, v in (existing or {}).items() if k != "meta"}
    if existing is not None:
        _check_subject(existing, subject)
    plain = {k: v for k, v in visit.encounter.items() if k not in _SPECIAL}
    encounter = copy.deepcopy(merge_resource(base, plain))
    encounter["subject"] = subject
    hospitalization = {
        **(encounter.get("hospitalization") or {}),
        **visit.encounter.get("hospitalization", {}),
    }
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    _participants(encounter, participants)
    _period(encounter, visit)
    _status(encounter, visit)
    _locations(encounter, visit, location)
    return encounter
