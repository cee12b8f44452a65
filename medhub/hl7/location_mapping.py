"""PL (person location) -> a chain of FHIR R4 Location resources (pure).

HL7 v2.5.1 §2.A.53 PL: 1 point of care, 2 room, 3 bed, 4 facility (HD),
5 location status, 6 person location type, 7 building, 8 floor,
9 description, 10 comprehensive location identifier (EI), 11 assigning
authority for location (HD). From v2.7 on, point of care, room and bed are HDs
themselves; their first sub-component is the name.

As in the v2-to-FHIR guide's ``PL[Location]`` map, each level sent becomes its
own Location (physical type site / ward / room / bed, FHIR R4
codesystem-location-physical-type) and each level is ``partOf`` the one above,
so "who is on ward ICU" and "who is in bed 3" are both answerable. A v2 location
has no id of its own, so each level is identified by its path from the
facility down (``GHH^ICU^101^A``) under the PL-11 assigning authority, or
under :data:`LOCATION_SYSTEM` when none is sent; PL-10, when sent, is added to
the most specific level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from medhub.clinical.identifiers import authority_system
from medhub.errors import Hl7Location, InputError, Issue
from medhub.hl7.datatype_mapping import clean
from medhub.hl7.er7 import Segment

LOCATION_SYSTEM: Final = "urn:medhub:hl7:location"
PHYSICAL_TYPE: Final = "http://terminology.hl7.org/CodeSystem/location-physical-type"

#: (PL component, physical type code, display), from the facility down to the bed.
_LEVELS: Final = ((4, "si", "Site"), (1, "wa", "Ward"), (2, "ro", "Room"), (3, "bd", "Bed"))


@dataclass(frozen=True, slots=True)
class MappedLocation:
    """One level of a PL: its Location resource (``partOf`` still to be resolved)."""

    resource: dict[str, Any]
    name: str


def _level_name(segment: Segment, field: int, component: int) -> str:
    name = clean(segment.value(field, 1, component, 1))
    if not name and component == 4:  # a facility sent only as a universal id
        name = clean(segment.value(field, 1, component, 2))
    return name


def _comprehensive_identifier(segment: Segment, field: int) -> dict[str, Any] | None:
    """PL-10, an EI held in sub-components: entity id & namespace & universal id & type."""
    value = clean(segment.value(field, 1, 10, 1))
    if not value:
        return None
    identifier: dict[str, Any] = {}
    system = authority_system(*(clean(segment.value(field, 1, 10, sub)) for sub in (2, 3, 4)))
    if system:
        identifier["system"] = system
    identifier["value"] = value
    return identifier


def pl_locations(segment: Segment, field: int, *, sequence: int = 1) -> list[MappedLocation]:
    """The Locations a PL names, outermost first; ``[]`` when the field is empty.

    Raises :class:`InputError` (table 0357 code 102, data type error) when the
    field is valued but names no facility, point of care, room or bed: such a
    location cannot be told apart from any other.
    """
    if not segment.raw(field).strip():
        return []
    system = (
        authority_system(
            clean(segment.value(field, 1, 11, 1)),
            clean(segment.value(field, 1, 11, 2)),
            clean(segment.value(field, 1, 11, 3)),
        )
        or LOCATION_SYSTEM
    )
    path: list[str] = []
    levels: list[MappedLocation] = []
    for component, code, display in _LEVELS:
        name = _level_name(segment, field, component)
        path.append(name)
        if not name:
            continue
        value = "^".join(path).rstrip("^")
        resource: dict[str, Any] = {
            "resourceType": "Location",
            "identifier": [{"system": system, "value": value}],
            "status": "active",
            "name": name,
            "mode": "instance",
            "physicalType": {
                "coding": [{"system": PHYSICAL_TYPE, "code": code, "display": display}]
            },
        }
        levels.append(MappedLocation(resource, name))
    if not levels:
        location = Hl7Location(segment.name, sequence, field)
        text = (
            f"{location.terser()} {segment.raw(field)!r} names no facility, point of care, "
            "room or bed"
        )
        raise InputError(text, [Issue(text, location=location, hl7_error_code=102)])
    comprehensive = _comprehensive_identifier(segment, field)
    if comprehensive is not None:
        levels[-1].resource["identifier"].append(comprehensive)
    description = clean(segment.value(field, 1, 9))
    if description:
        levels[-1].resource["description"] = description
    return levels


def location_display(levels: list[MappedLocation]) -> str:
    """``GHH, ICU, 101, A``: every level's name, outermost first."""
    return ", ".join(level.name for level in levels)
