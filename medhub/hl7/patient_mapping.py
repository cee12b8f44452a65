"""Map the PID segment of an HL7 v2 message to a FHIR R4 Patient (pure).

Follows the HL7 v2-to-FHIR mapping (PID[Patient], CX[Identifier],
XPN[HumanName], XAD[Address], XTN[ContactPoint]) for the fields medhub carries:
PID-3 identifiers with assigning authority, PID-5 names, PID-7 birth date,
PID-8 sex, PID-11 addresses, PID-13/14 phones, PID-16 marital status,
PID-29/30 death. Every value is read through the ER7 parser, so escape
sequences are already decoded.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

from medhub.errors import Hl7Location, Issue, MissingDataError
from medhub.hl7.datatype_mapping import cx_identifier
from medhub.hl7.er7 import Message, Segment

_GENDER: Final = {
    "M": "male",
    "F": "female",
    "O": "other",
    "A": "other",
    "N": "other",
    "U": "unknown",
}
_NAME_USE: Final = {
    "L": "official",
    "D": "usual",
    "M": "maiden",
    "N": "nickname",
    "A": "anonymous",
    "T": "temp",
}
_ADDRESS_USE: Final = {
    "H": "home",
    "B": "work",
    "O": "work",
    "C": "temp",
    "M": "home",
    "BA": "old",
    "BI": "billing",
}
_PHONE_USE: Final = {
    "PRN": "home",
    "ORN": "home",
    "WPN": "work",
    "VHN": "home",
    "EMR": "home",
    "NET": "home",
    "PRS": "mobile",
}
_MARITAL: Final = frozenset("ADILMPSTUW")
V3_MARITAL: Final = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


def hl7_date(value: str, location: Hl7Location) -> str:
    """HL7 DT/DTM (``YYYY[MM[DD[...]]]``) -> FHIR date (``YYYY[-MM[-DD]]``)."""
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    message = f"{location.terser()} {value!r} is not an HL7 date"
    if not digits.isdigit() or len(digits) < 4 or len(digits) in (5, 7):
        raise MissingDataError(message, [Issue(message, location=location, hl7_error_code=102)])
    year, month, day = int(digits[:4]), int(digits[4:6] or 1), int(digits[6:8] or 1)
    try:
        date(year, month, day)  # month 13 or 30 February must not reach the store
    except ValueError as exc:
        raise MissingDataError(
            message, [Issue(message, location=location, hl7_error_code=102)]
        ) from exc
    parts = [digits[:4]]
    if len(digits) >= 6:
        parts.append(digits[4:6])
    if len(digits) >= 8:
        parts.append(digits[6:8])
    return "-".join(parts)


def _identifiers(pid: Segment) -> list[dict[str, Any]]:
    """PID-3, every repetition with a value (CX -> Identifier)."""
    found = (cx_identifier(pid, 3, rep) for rep in range(1, len(pid.repetitions(3)) + 1))
    return [identifier for identifier in found if identifier is not None]


def _names(pid: Segment) -> list[dict[str, Any]]:
    names = []
    for rep in range(1, len(pid.repetitions(5)) + 1):
        family = pid.value(5, rep, 1, 1)
        given = [g for g in (pid.value(5, rep, 2), pid.value(5, rep, 3)) if g]
        name: dict[str, Any] = {}
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        for comp, key in ((4, "suffix"), (5, "prefix")):
            if pid.value(5, rep, comp):
                name[key] = [pid.value(5, rep, comp)]
        use = _NAME_USE.get(pid.value(5, rep, 7))
        if use:
            name["use"] = use
        if family or given:
            names.append(name)
    return names


def _addresses(pid: Segment) -> list[dict[str, Any]]:
    addresses = []
    for rep in range(1, len(pid.repetitions(11)) + 1):
        street = " ".join(
            pid.value(11, rep, 1, sub).strip()
            for sub in range(1, 4)
            if pid.value(11, rep, 1, sub).strip()
        )
        lines = [x for x in (street, pid.value(11, rep, 2).strip()) if x]
        address: dict[str, Any] = {}
        if lines:
            address["line"] = lines
        for comp, key in (
            (3, "city"),
            (4, "state"),
            (5, "postalCode"),
            (6, "country"),
            (9, "district"),
        ):
            if pid.value(11, rep, comp).strip():
                address[key] = pid.value(11, rep, comp).strip()
        use = _ADDRESS_USE.get(pid.value(11, rep, 7))
        if use:
            address["use"] = use
        if address:
            addresses.append(address)
    return addresses


def _phones(pid: Segment) -> list[dict[str, Any]]:
    telecom = []
    for number, default_use in ((13, "home"), (14, "work")):
        for rep in range(1, len(pid.repetitions(number)) + 1):
            equipment = pid.value(number, rep, 3)
            email = pid.value(number, rep, 4)
            if equipment in ("Internet", "X.400") or (email and not pid.value(number, rep, 1)):
                if email:
                    telecom.append({"system": "email", "value": email})
                continue
            value = pid.value(number, rep, 1)
            if not value:
                area, local = pid.value(number, rep, 6), pid.value(number, rep, 7)
                value = f"({area}) {local}" if area else local
            if not value:
                continue
            point: dict[str, Any] = {
                "system": "fax" if equipment == "FX" else "phone",
                "value": value,
            }
            use = (
                "mobile"
                if equipment == "CP"
                else _PHONE_USE.get(pid.value(number, rep, 2), default_use)
            )
            point["use"] = use if number == 13 or use == "mobile" else "work"
            telecom.append(point)
    return telecom


def pid_to_patient(message: Message) -> dict[str, Any]:
    """A FHIR Patient (without id) from the message's PID segment.

    Raises :class:`MissingDataError` (HL7 code 101) when PID or PID-3 is missing:
    without an identifier medhub cannot tell which patient the data is about.
    """
    pid = message.segment("PID")
    if pid is None:
        message_text = "the message has no PID segment"
        raise MissingDataError(
            message_text, [Issue(message_text, location=Hl7Location("PID"), hl7_error_code=100)]
        )
    identifiers = _identifiers(pid)
    if not identifiers:
        text = "PID-3 (patient identifier list) is empty"
        raise MissingDataError(
            text, [Issue(text, location=Hl7Location("PID", 1, 3), hl7_error_code=101)]
        )
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
    names = _names(pid)
    if names:
        patient["name"] = names
    if pid.value(7):
        patient["birthDate"] = hl7_date(pid.value(7), Hl7Location("PID", 1, 7))
    sex = pid.value(8)
    if sex:
        if sex.upper() not in _GENDER:
            text = f"PID-8 administrative sex {sex!r} is not in HL7 table 0001"
            raise MissingDataError(
                text, [Issue(text, location=Hl7Location("PID", 1, 8), hl7_error_code=103)]
            )
        patient["gender"] = _GENDER[sex.upper()]
    addresses = _addresses(pid)
    if addresses:
        patient["address"] = addresses
    telecom = _phones(pid)
    if telecom:
        patient["telecom"] = telecom
    marital = pid.value(16)
    if marital and marital.upper() in _MARITAL:
        patient["maritalStatus"] = {"coding": [{"system": V3_MARITAL, "code": marital.upper()}]}
    if pid.value(29):
        # The date part only: an HL7 time without an offset has no zone, FHIR needs one.
        patient["deceasedDateTime"] = hl7_date(pid.value(29), Hl7Location("PID", 1, 29))
    elif pid.value(30).upper() == "Y":
        patient["deceasedBoolean"] = True
    return patient
