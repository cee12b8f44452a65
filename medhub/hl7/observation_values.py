"""OBX-5 (observation value) -> ``Observation.value[x]``, by the value type in OBX-2.

Follows the v2-to-FHIR OBX[Observation] map (OBX-5 rows) and HL7 v2.5.1
§7.4.2.2 (OBX-2, table 0125):

===========  ==========================================================
OBX-2        FHIR
===========  ==========================================================
NM           valueQuantity (unit from OBX-6, UCUM when known)
SN           valueQuantity with comparator (``<5``), valueRange (``2-4``),
             valueRatio (``1:128``), valueString (``2+``, ``<>``)
NR           valueRange
ST, TX, FT   valueString (repetitions are lines, joined with newlines)
CE, CWE,     valueCodeableConcept
CNE, CF, IS,
ID
DT, DTM, TS  valueDateTime (zone rule in :mod:`medhub.hl7.hl7_datatypes`)
TM           valueTime
DR           valuePeriod
ED, RP       the R5 ``Observation.value`` cross-version extension holding an
             Attachment (R4 has no valueAttachment; v2-to-FHIR does the same)
===========  ==========================================================

An empty OBX-5 maps to no value (a pending result, OBX-11 ``I``). Other value
types, a value that does not parse as its type, and repetitions of a
single-valued type are refused with the OBX field's location: storing a
numeric result as something else would hide it from every numeric query.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from medhub.errors import Hl7Location
from medhub.hl7.datatype_mapping import codeable_concept, fhir_datetime
from medhub.hl7.er7 import Segment
from medhub.hl7.hl7_datatypes import field_error, field_path, hl7_time, parse_nm
from medhub.hl7.ucum_units import quantity_unit

#: FHIR R5 Observation.value[x] carried in R4 (FHIR cross-version extensions).
VALUE_EXTENSION: Final = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value"
_TEXT_TYPES: Final = frozenset({"ST", "TX", "FT"})
_CODED_TYPES: Final = frozenset({"CE", "CWE", "CNE", "CF", "IS", "ID"})
_COMPARATORS: Final = {"": None, "=": None, "<": "<", ">": ">", "<=": "<=", ">=": ">="}
#: ED-3 / RP-4 data subtypes (HL7 table 0291) -> MIME types.
_MIME: Final = {
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "PDF": "application/pdf",
    "RTF": "application/rtf",
    "HTML": "text/html",
    "XML": "application/xml",
    "OCTET-STREAM": "application/octet-stream",
}
SUPPORTED_TYPES: Final = frozenset(
    _TEXT_TYPES | _CODED_TYPES | {"NM", "SN", "NR", "DT", "DTM", "TS", "TM", "DR", "ED", "RP"}
)


def observation_value(
    obx: Segment, occurrence: int, *, default_offset: str | None
) -> dict[str, Any]:
    """The ``value[x]`` (or attachment extension) keys for one OBX; ``{}`` when OBX-5 is empty."""
    value_type = obx.value(2).strip().upper()
    repetitions = [r for r in obx.repetitions(5) if r.strip()]
    if not repetitions:
        return {}
    field5 = Hl7Location("OBX", occurrence, 5)
    if not value_type:
        location = Hl7Location("OBX", occurrence, 2)
        raise field_error(
            f"{field_path(location)} (value type) is empty but OBX-5 has a value",
            location,
            101,
            required=True,
        )
    if value_type not in SUPPORTED_TYPES:
        location = Hl7Location("OBX", occurrence, 2)
        raise field_error(
            f"{field_path(location)} value type {value_type!r} is not mapped by medhub "
            f"(supported: {', '.join(sorted(SUPPORTED_TYPES))})",
            location,
            103,
        )
    if value_type in _TEXT_TYPES:
        lines = [obx.value(5, rep) for rep in range(1, len(obx.repetitions(5)) + 1)]
        return {"valueString": "\n".join(lines).strip("\n")}
    if len(obx.repetitions(5)) > 1:
        location = Hl7Location("OBX", occurrence, 5, 2)
        raise field_error(
            f"{field_path(field5)} repeats, but a {value_type} result has one value; "
            "send one OBX per value",
            location,
            102,
        )
    return _single_value(obx, value_type, field5, default_offset)


def _single_value(
    obx: Segment, value_type: str, field5: Hl7Location, default_offset: str | None
) -> dict[str, Any]:
    if value_type == "NM":
        return {"valueQuantity": {"value": parse_nm(obx.value(5), field5), **quantity_unit(obx, 6)}}
    if value_type in _CODED_TYPES:
        concept = codeable_concept(obx, 5)
        return {"valueCodeableConcept": concept} if concept else {}
    if value_type == "SN":
        return _structured_numeric(obx, field5)
    if value_type == "NR":
        low, high = obx.value(5, 1, 1), obx.value(5, 1, 2)
        return {"valueRange": _range(obx, low, high, field5)}
    if value_type in ("DT", "DTM", "TS"):
        text = fhir_datetime(obx.value(5, 1, 1), field5, default_offset=default_offset)
        return {"valueDateTime": text}
    if value_type == "TM":
        return {"valueTime": hl7_time(obx.value(5), field5)}
    if value_type == "DR":
        period = {
            key: fhir_datetime(obx.value(5, 1, comp), field5, default_offset=default_offset)
            for comp, key in ((1, "start"), (2, "end"))
            if obx.value(5, 1, comp).strip()
        }
        return {"valuePeriod": period} if period else {}
    attachment = _encapsulated(obx, field5) if value_type == "ED" else _pointer(obx)
    if not attachment:
        return {}
    return {"extension": [{"url": VALUE_EXTENSION, "valueAttachment": attachment}]}


def _range(obx: Segment, low: str, high: str, field5: Hl7Location) -> dict[str, Any]:
    unit = quantity_unit(obx, 6)
    result: dict[str, Any] = {}
    if low.strip():
        result["low"] = {"value": parse_nm(low, field5), **unit}
    if high.strip():
        result["high"] = {"value": parse_nm(high, field5), **unit}
    return result


def _structured_numeric(obx: Segment, field5: Hl7Location) -> dict[str, Any]:
    """SN (v2.5.1 §2.A.73): comparator ^ num1 ^ separator/suffix ^ num2, per v2-to-FHIR."""
    comparator, num1, separator, num2 = (obx.value(5, 1, c).strip() for c in (1, 2, 3, 4))
    text = f"{comparator}{num1}{separator}{num2}"
    if comparator == "<>" or (separator == "+" and not num2):
        return {"valueString": text}
    if comparator not in _COMPARATORS:
        raise field_error(
            f"{field_path(field5)} {text!r}: SN comparator {comparator!r} is not one of "
            "<, >, <=, >=, =, <>",
            Hl7Location("OBX", field5.sequence, 5, 0, 1),
            102,
        )
    if separator == "-" and num1 and num2 and _COMPARATORS[comparator] is None:
        return {"valueRange": _range(obx, num1, num2, field5)}
    if separator in (":", "/") and num1 and num2 and _COMPARATORS[comparator] is None:
        return {
            "valueRatio": {
                "numerator": {"value": parse_nm(num1, field5)},
                "denominator": {"value": parse_nm(num2, field5)},
            }
        }
    if num1 and not separator and not num2:
        quantity: dict[str, Any] = {"value": parse_nm(num1, field5)}
        if _COMPARATORS[comparator]:
            quantity["comparator"] = _COMPARATORS[comparator]
        return {"valueQuantity": {**quantity, **quantity_unit(obx, 6)}}
    raise field_error(
        f"{field_path(field5)} {text!r} is not a structured numeric (HL7 SN) medhub can map",
        field5,
        102,
    )


def _content_type(type_of_data: str, subtype: str) -> str | None:
    mime = _MIME.get(subtype.strip().upper())
    if mime is None and type_of_data.strip().upper() in ("TX", "TEXT", "FT"):
        return "text/plain"
    return mime


def _encapsulated(obx: Segment, field5: Hl7Location) -> dict[str, Any]:
    """ED (v2.5.1 §2.A.24): source ^ type ^ subtype ^ encoding (table 0299) ^ data."""
    encoding, data = obx.value(5, 1, 4).strip().upper(), obx.value(5, 1, 5).strip()
    if not data:
        return {}
    location = Hl7Location("OBX", field5.sequence, 5, 0, 5)
    try:
        if encoding == "BASE64":
            payload = "".join(data.split())
            base64.b64decode(payload, validate=True)
        elif encoding == "HEX":
            payload = base64.b64encode(bytes.fromhex(data)).decode()
        else:  # "A": ASCII text as sent
            payload = base64.b64encode(data.encode()).decode()
    except (binascii.Error, ValueError) as exc:
        raise field_error(
            f"{field_path(location)} is not valid {encoding or 'ASCII'} data (ED-4)", location, 102
        ) from exc
    attachment: dict[str, Any] = {"data": payload}
    content_type = _content_type(obx.value(5, 1, 2), obx.value(5, 1, 3))
    if content_type:
        attachment["contentType"] = content_type
    return attachment


def _pointer(obx: Segment) -> dict[str, Any]:
    """RP (v2.5.1 §2.A.65): pointer ^ application ^ type ^ subtype -> Attachment.url."""
    pointer = obx.value(5, 1, 1).strip()
    if not pointer:
        return {}
    attachment: dict[str, Any] = {"url": "%20".join(pointer.split(" "))}
    content_type = _content_type(obx.value(5, 1, 3), obx.value(5, 1, 4))
    if content_type:
        attachment["contentType"] = content_type
    return attachment
