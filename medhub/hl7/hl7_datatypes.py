"""HL7 v2 data types for results and orders -> FHIR R4 (pure helpers shared by the v2 mappers).

The data type maps every v2 mapper needs (CWE[CodeableConcept], the table 0396
coding systems, DTM[dateTime] with its zone rule, XCN[Practitioner]) live in
:mod:`medhub.hl7.datatype_mapping` and :mod:`medhub.hl7.practitioner_mapping`;
results and orders use them too, so a code, a time or a practitioner maps the
same way whether it came in an ADT, an ORU or an ORM. This module adds what
results and orders need on top:

* :func:`field_error` / :func:`field_path`: an AE error whose ERR-2 names the
  segment occurrence, field, repetition and component (HL7 ERL), and whose text
  says ``OBX(3)-5`` so a person reading the log finds the same place;
* NM (§2.A.47) -> JSON number, TM (§2.A.75) -> FHIR ``time``;
* EI (§2.A.24) order numbers -> Identifier, scoped to the sending application
  when they have no assigning authority (§4.5.1.2, see :func:`ei_identifier`);
* DTM -> FHIR ``instant`` (OBR-22).

Date/time rule (HL7 v2.5.1 §2.A.22 DTM, FHIR R4 datatypes.html#dateTime), as
:func:`medhub.hl7.datatype_mapping.fhir_datetime` applies it: a value with its
own offset keeps its precision and zone; a value without one is in the sender's
local zone, taken from MSH-7 when MSH-7 carries an offset; with neither, only
the date is kept (``2025-10-16``), because a wrong hour on a vital sign is worse
than no hour. (MSH-7's offset can differ from the value's by an hour across a
daylight-saving switch; IHE PCD-01 §B.8 requires offsets for this reason.)
"""

from __future__ import annotations

import re
from typing import Any, Final

from medhub.clinical.identifiers import LOCAL_AUTHORITY_PREFIX, V2_0203, authority_system
from medhub.errors import Hl7Location, InputError, Issue, MissingDataError
from medhub.hl7.datatype_mapping import fhir_datetime
from medhub.hl7.er7 import Segment

_TM: Final = re.compile(r"^(?P<H>\d{2})(?P<M>\d{2})?(?P<S>\d{2})?(?P<f>\.\d{1,6})?([+-]\d{4})?$")
_NM: Final = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")


def field_path(location: Hl7Location) -> str:
    """A terser path that names the segment occurrence: ``OBX(3)-5`` (``OBX-5`` for the first)."""
    text = location.terser()
    if location.sequence > 1:
        return f"{location.segment}({location.sequence}){text[len(location.segment) :]}"
    return text


def field_error(
    text: str,
    location: Hl7Location,
    hl7_code: int,
    *,
    required: bool = False,
) -> InputError:
    """An AE error naming ``location``: MissingDataError when ``required``, else InputError.

    ``hl7_code`` is the HL7 table 0357 code for ERR-3: 100 segment sequence
    error, 101 required field missing, 102 data type error, 103 table value not
    found.
    """
    issue = Issue(
        text,
        code="required" if required else ("code-invalid" if hl7_code == 103 else "invalid"),
        location=location,
        hl7_error_code=hl7_code,
    )
    if required:
        return MissingDataError(text, [issue])
    return InputError(text, [issue])


def hl7_instant(value: str, location: Hl7Location, *, default_offset: str | None) -> str | None:
    """An HL7 DTM as a FHIR ``instant`` (needs a time and a zone), or None when it has neither."""
    text = fhir_datetime(value, location, default_offset=default_offset)
    return text if "T" in text else None


def hl7_time(value: str, location: Hl7Location) -> str:
    """HL7 TM (``HH[MM[SS[.S]]][+/-ZZZZ]``) -> FHIR ``time`` (``hh:mm:ss``, which has no zone)."""
    match = _TM.match(value.strip())
    message = f"{field_path(location)} {value!r} is not an HL7 time (HHMMSS)"
    if not match or int(match["H"]) > 23 or int(match["M"] or 0) > 59 or int(match["S"] or 0) > 59:
        raise field_error(message, location, 102)
    return f"{match['H']}:{match['M'] or '00'}:{match['S'] or '00'}{match['f'] or ''}"


def parse_nm(text: str, location: Hl7Location) -> int | float:
    """HL7 NM (v2.5.1 §2.A.47: optional sign, digits, optional decimal point) -> a JSON number.

    Integers stay ``int``; others become ``float`` (trailing zeros such as
    ``4.10`` are not kept: FHIR compares decimals by value).
    """
    raw = text.strip()
    if not _NM.match(raw):
        message = f"{field_path(location)} {text!r} is not a number (HL7 NM)"
        raise field_error(message, location, 102)
    if "." not in raw:
        return int(raw)
    return float(raw)


def sender_system(msh: Segment) -> str:
    """The identifier system of the sending application (MSH-3, an HD)."""
    system = authority_system(
        msh.value(3, 1, 1).strip(), msh.value(3, 1, 2).strip(), msh.value(3, 1, 3).strip()
    )
    return system or LOCAL_AUTHORITY_PREFIX + "unknown-sender"


def ei_identifier(
    segment: Segment,
    number: int,
    *,
    default_system: str,
    type_code: str | None = None,
    repetition: int = 1,
) -> dict[str, Any] | None:
    """An order or equipment number (EI: id ^ namespace ^ universal id ^ type) -> Identifier.

    The system is the assigning authority (EI-2..4, by the rule of
    :func:`medhub.clinical.identifiers.authority_system`). A placer or filler
    number without one is unique only within the application that assigned it
    (HL7 v2.5.1 §4.5.1.2: the namespace defaults to the sending application),
    and order numbers such as ``1001`` are reused by every LIS, so it gets
    ``default_system``, the sender's: two senders' order 1001 never merge.
    """
    value = " ".join(segment.value(number, repetition, 1).split())
    if not value:
        return None
    system = authority_system(
        segment.value(number, repetition, 2).strip(),
        segment.value(number, repetition, 3).strip(),
        segment.value(number, repetition, 4).strip(),
    )
    identifier: dict[str, Any] = {"system": system or default_system, "value": value}
    if type_code:
        identifier["type"] = {"coding": [{"system": V2_0203, "code": type_code}]}
    return identifier
