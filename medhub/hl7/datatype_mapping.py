"""HL7 v2 data types -> FHIR R4 data types (pure), as the v2-to-FHIR guide's data type maps.

The segment maps (PV1, AL1, DG1, MRG, ...) all read the same few v2 data types,
so they are mapped once here:

* CX / EI (HL7 v2.5.1 §2.A.14, §2.A.24) -> ``Identifier`` (v2-to-FHIR
  ``CX[Identifier]``, ``EI[Identifier]``); the assigning authority becomes the
  system by the rule of :mod:`medhub.clinical.identifiers`.
* CWE / CE / IS (§2.A.13, §2.A.8, §2.A.35) -> ``CodeableConcept``
  (``CWE[CodeableConcept]``); the coding system name (HL7 table 0396) becomes a
  FHIR system URI through :data:`CODING_SYSTEMS`.
* DTM / TS (§2.A.22, §2.A.77) -> FHIR ``dateTime``.

FHIR primitive rules are enforced here so mapped resources stay valid without a
``fhir.resources`` round trip on the hot path: codes are trimmed and internal
runs of white space collapsed (FHIR ``code`` is ``[^\\s]+( [^\\s]+)*``), empty
strings are never emitted, and a time of day is only written with a zone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final

from medhub.clinical.identifiers import V2_0203, authority_system
from medhub.errors import Hl7Location, InputError, Issue
from medhub.hl7.er7 import Message, Segment

#: Prefix for coding systems that HL7 table 0396 does not give a FHIR URI for (local codes).
LOCAL_CODING_SYSTEM_PREFIX: Final = "urn:medhub:hl7:coding-system:"
V2_TABLE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v2-{table}"

#: HL7 table 0396 coding system names -> FHIR system URIs (FHIR R4 terminologies-systems.html).
CODING_SYSTEMS: Final[dict[str, str]] = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "SNOMED-CT": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "UCUM": "http://unitsofmeasure.org",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "MDC": "urn:iso:std:iso:11073:10101",
    "ISO3166_1": "urn:iso:std:iso:3166",
    "UNII": "http://fdasis.nlm.nih.gov",
}

_HL7_TABLE_NAME: Final = re.compile(r"^HL7(\d{3,4})$", re.IGNORECASE)
_DTM: Final = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?"
    r"(?P<s>\d{2})?(?:\.(?P<f>\d{1,4}))?(?P<tz>[+-]\d{4})?$"
)


def clean(value: str) -> str:
    """Trim and collapse white space: the form FHIR ``code`` and ``string`` values need."""
    return " ".join(value.split())


def coding_system(name: str) -> str | None:
    """The FHIR system URI for an HL7 table 0396 coding system name (CWE-3), or None if empty.

    ``HL7nnnn`` names an HL7-defined table (``http://terminology.hl7.org/CodeSystem/v2-nnnn``);
    a URI is kept as sent; any other unknown name is a local system of the sender.
    """
    name = clean(name)
    if not name:
        return None
    known = CODING_SYSTEMS.get(name.upper())
    if known:
        return known
    table = _HL7_TABLE_NAME.match(name)
    if table:
        return V2_TABLE_SYSTEM.format(table=table.group(1).zfill(4))
    if name.startswith(("http://", "https://", "urn:")):
        return name
    return LOCAL_CODING_SYSTEM_PREFIX + name.replace(" ", "_")


def _coding(code: str, display: str, system: str | None) -> dict[str, Any] | None:
    code = clean(code)
    if not code:
        return None
    coding: dict[str, Any] = {}
    if system:
        coding["system"] = system
    coding["code"] = code
    if clean(display):
        coding["display"] = clean(display)
    return coding


def codeable_concept(
    segment: Segment,
    field: int,
    repetition: int = 1,
    *,
    default_system: str | None = None,
    text: str = "",
) -> dict[str, Any] | None:
    """CWE/CE/IS -> CodeableConcept: the identifier triplet, the alternate triplet, text.

    ``default_system`` applies when CWE-3 is empty (an IS/ID field bound to a v2
    table). Without a code, the text (CWE-9, CWE-2 or ``text``) is kept on its own.
    Returns None when the field carries nothing.
    """
    comps = [segment.value(field, repetition, n) for n in range(1, 10)]
    codings = [
        c
        for c in (
            _coding(comps[0], comps[1], coding_system(comps[2]) or default_system),
            _coding(comps[3], comps[4], coding_system(comps[5])),
        )
        if c is not None
    ]
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    label = clean(text) or clean(comps[8]) or ("" if codings else clean(comps[1]))
    if label:
        concept["text"] = label
    return concept or None


def v2_table_concept(segment: Segment, field: int, table: str) -> dict[str, Any] | None:
    """An IS/CWE field bound to HL7 table ``table`` (e.g. ``"0023"``) as a CodeableConcept."""
    return codeable_concept(segment, field, default_system=V2_TABLE_SYSTEM.format(table=table))


def identifier_at(
    segment: Segment,
    field: int,
    repetition: int = 1,
    *,
    authority: int,
    kind: int,
    type_code: str = "",
) -> dict[str, Any] | None:
    """An identifier held in components of a field: value in component 1, assigning
    authority (an HD) in ``authority``, identifier type (table 0203) in ``kind``.

    CX puts them at 1/4/5, XCN at 1/9/13 (HL7 v2.5.1 §2.A.14, §2.A.89).
    """
    value = clean(segment.value(field, repetition, 1))
    if not value:
        return None
    identifier: dict[str, Any] = {}
    system = authority_system(
        clean(segment.value(field, repetition, authority, 1)),
        clean(segment.value(field, repetition, authority, 2)),
        clean(segment.value(field, repetition, authority, 3)),
    )
    if system:
        identifier["system"] = system
    identifier["value"] = value
    code = clean(type_code or segment.value(field, repetition, kind))
    if code:
        identifier["type"] = {"coding": [{"system": V2_0203, "code": code}]}
    return identifier


def cx_identifier(
    segment: Segment, field: int, repetition: int = 1, *, type_code: str = ""
) -> dict[str, Any] | None:
    """CX -> Identifier: CX-1 value, CX-4 assigning authority as system, CX-5 (or ``type_code``)."""
    return identifier_at(segment, field, repetition, authority=4, kind=5, type_code=type_code)


def cx_identifiers(segment: Segment, field: int) -> list[dict[str, Any]]:
    """Every repetition of a CX field that carries a value (PID-3, MRG-1)."""
    found = (
        cx_identifier(segment, field, rep) for rep in range(1, len(segment.repetitions(field)) + 1)
    )
    return [i for i in found if i is not None]


def ei_identifier(segment: Segment, field: int, repetition: int = 1) -> dict[str, Any] | None:
    """EI -> Identifier: EI-1 value; EI-2..4 (namespace, universal id, type) as the system."""
    value = clean(segment.value(field, repetition, 1))
    if not value:
        return None
    identifier: dict[str, Any] = {}
    system = authority_system(
        clean(segment.value(field, repetition, 2)),
        clean(segment.value(field, repetition, 3)),
        clean(segment.value(field, repetition, 4)),
    )
    if system:
        identifier["system"] = system
    identifier["value"] = value
    return identifier


def _bad_time(value: str, location: Hl7Location) -> InputError:
    text = (
        f"{location.terser()} {value!r} is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS]]]]][+/-ZZZZ])"
    )
    return InputError(text, [Issue(text, location=location, hl7_error_code=102)])


def _offset(zone: str) -> str | None:
    """``+0215`` -> ``+02:15`` when FHIR accepts it (-14:00..+14:00), else None."""
    hours, minutes = int(zone[1:3]), int(zone[3:5])
    if minutes > 59 or hours > 14 or (hours == 14 and minutes):
        return None
    return f"{zone[0]}{zone[1:3]}:{zone[3:5]}"


def sender_offset(message: Message) -> str | None:
    """The sender's UTC offset as MSH-7 states it (``+02:15``), or None when MSH-7 has none.

    HL7 v2.5.1 §2.A.22: a time without a zone is in the sender's local zone; the
    zone of MSH-7 is the best statement of it that the message itself makes.
    """
    match = _DTM.match(message.msh.value(7).strip())
    if match is None or match["tz"] is None:
        return None
    return _offset(match["tz"])


def fhir_datetime(value: str, location: Hl7Location, *, default_offset: str | None = None) -> str:
    """HL7 DTM -> FHIR dateTime, keeping the precision sent.

    A time of day needs a zone in FHIR: the DTM's own, else ``default_offset``
    (see :func:`sender_offset`); with neither, only the date is kept rather
    than guessing a zone. Raises :class:`InputError` (table 0357 code 102) on
    text that is not a DTM or not a real calendar time.
    """
    text = value.strip()
    match = _DTM.match(text)
    if match is None:
        raise _bad_time(value, location)
    parts = match.groupdict()
    try:
        moment = datetime(
            int(parts["y"]),
            int(parts["mo"] or 1),
            int(parts["d"] or 1),
            int(parts["h"] or 0),
            int(parts["mi"] or 0),
            int(parts["s"] or 0),
        )
    except ValueError as exc:
        raise _bad_time(value, location) from exc
    zone = _offset(parts["tz"]) if parts["tz"] else default_offset
    if parts["tz"] and zone is None:
        raise _bad_time(value, location)
    if parts["mo"] is None:
        return f"{moment:%Y}"
    if parts["d"] is None:
        return f"{moment:%Y-%m}"
    date_part = f"{moment:%Y-%m-%d}"
    if parts["h"] is None:
        return date_part
    if zone is None:
        return date_part
    fraction = f".{parts['f']}" if parts["f"] else ""
    return f"{date_part}T{moment:%H:%M:%S}{fraction}{zone}"
