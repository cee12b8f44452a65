"""XCN (extended composite id and name for persons) -> FHIR R4 Practitioner (pure).

HL7 v2.5.1 §2.A.89 XCN: 1 id number, 2 family name (FN, its first sub-component
the surname), 3 given name, 4 second and further given names, 5 suffix,
6 prefix, 7 degree, 9 assigning authority (HD), 13 identifier type code
(table 0203). The v2-to-FHIR guide's ``XCN[Practitioner]`` map puts XCN-1 with
XCN-9 into ``Practitioner.identifier`` and XCN-2..6 into ``Practitioner.name``.

The id is what makes a Practitioner findable again: without one medhub does
not create a resource (it could never tell two of them apart) and the person
is carried only as a display name on the reference that named them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medhub.errors import Hl7Location
from medhub.hl7.datatype_mapping import clean, identifier_at
from medhub.hl7.er7 import Segment


@dataclass(frozen=True, slots=True)
class MappedPerson:
    """One XCN repetition: the Practitioner to find or create (None without XCN-1), and a label."""

    practitioner: dict[str, Any] | None
    display: str
    location: Hl7Location


def _name(segment: Segment, field: int, rep: int) -> dict[str, Any]:
    name: dict[str, Any] = {}
    family = clean(segment.value(field, rep, 2, 1))
    given = [g for g in (clean(segment.value(field, rep, n)) for n in (3, 4)) if g]
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    prefix = clean(segment.value(field, rep, 6))
    if prefix:
        name["prefix"] = [prefix]
    suffix = [s for s in (clean(segment.value(field, rep, n)) for n in (5, 7)) if s]
    if suffix:
        name["suffix"] = suffix
    return name


def _identifier(segment: Segment, field: int, rep: int) -> dict[str, Any] | None:
    """XCN-1 id with XCN-9 assigning authority and XCN-13 identifier type."""
    return identifier_at(segment, field, rep, authority=9, kind=13)


def display_name(name: dict[str, Any]) -> str:
    """``Dr. Kathleen Woolfson`` from a FHIR HumanName (prefix, given names, family)."""
    parts = [*name.get("prefix", []), *name.get("given", [])]
    if name.get("family"):
        parts.append(name["family"])
    return " ".join(parts)


def xcn_person(
    segment: Segment, field: int, repetition: int = 1, *, sequence: int = 1
) -> MappedPerson | None:
    """One XCN repetition as a :class:`MappedPerson`; None when it names nobody.

    ``sequence`` is which occurrence of the segment this is (the second DG1 is 2),
    for the ERR location of anything wrong with the person later on.
    """
    location = Hl7Location(segment.name, sequence, field, repetition)
    name = _name(segment, field, repetition)
    identifier = _identifier(segment, field, repetition)
    if identifier is None and not name:
        return None
    label = display_name(name) or str(identifier["value"] if identifier else "")
    if identifier is None:
        return MappedPerson(None, label, location)
    practitioner: dict[str, Any] = {"resourceType": "Practitioner", "identifier": [identifier]}
    if name:
        practitioner["name"] = [name]
    return MappedPerson(practitioner, label, location)


def xcn_people(segment: Segment, field: int, *, sequence: int = 1) -> list[MappedPerson]:
    """Every repetition of an XCN field that names someone (PV1-7 may repeat)."""
    found = (
        xcn_person(segment, field, rep, sequence=sequence)
        for rep in range(1, len(segment.repetitions(field)) + 1)
    )
    return [p for p in found if p is not None]
