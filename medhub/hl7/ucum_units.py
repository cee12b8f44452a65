"""HL7 v2 units (OBX-6, RXO-4 …, a CWE) -> the unit part of a FHIR Quantity, UCUM when possible.

FHIR R4 (datatypes.html#Quantity, qty-3) allows a ``code`` only with a
``system``; the vital-signs profile wants UCUM (``http://unitsofmeasure.org``).
The rule, in order:

1. the sender says the unit is UCUM (CWE-3 or CWE-6 is ``UCUM``): its code is
   kept as sent (UCUM is case-sensitive; medhub does not re-parse it);
2. the unit is an IEEE 11073 ``MDC_DIM_*`` code (PCD-01 sends these): the UCUM
   equivalent from :data:`medhub.clinical.vital_codes.MDC_UNITS`;
3. the text is a common UCUM code or a known alias (``bpm``, ``beats/min`` ->
   ``/min``; ``mmHg`` -> ``mm[Hg]``; ``mg/dl`` -> ``mg/dL``; ``°C`` -> ``Cel``;
   ISO 2955 ``giga.l-1`` -> ``10*9/L`` …): that UCUM code;
4. anything else is kept as ``unit`` text only, with no code: guessing a
   unit is how a dose becomes a thousand times wrong.
"""

from __future__ import annotations

from typing import Any, Final

from medhub.clinical.vital_codes import UCUM_SYSTEM, ucum_for_mdc_unit
from medhub.hl7.er7 import Segment

#: UCUM codes common in results, vitals and doses, accepted as sent when no system is named.
COMMON_UCUM: Final[frozenset[str]] = frozenset(
    {
        "%",
        "/min",
        "/h",
        "1",
        "mm[Hg]",
        "cm[H2O]",
        "Cel",
        "[degF]",
        "kg",
        "g",
        "mg",
        "ug",
        "ng",
        "pg",
        "L",
        "dL",
        "mL",
        "uL",
        "fL",
        "mmol/L",
        "umol/L",
        "nmol/L",
        "meq/L",
        "mg/dL",
        "g/dL",
        "g/L",
        "mg/L",
        "ug/L",
        "ng/mL",
        "pg/mL",
        "U/L",
        "[IU]/L",
        "10*3/uL",
        "10*6/uL",
        "10*9/L",
        "10*12/L",
        "s",
        "min",
        "h",
        "d",
        "cm",
        "mm",
        "m",
        "[in_i]",
        "[lb_av]",
        "kg/m2",
        "L/min",
        "mL/min",
        "mL/h",
        "mg/kg",
        "mosm/kg",
        "[pH]",
        "kPa",
    }
)

#: Spellings senders use for UCUM units; matched case-insensitively.
ALIASES: Final[dict[str, str]] = {
    "bpm": "/min",
    "beats/min": "/min",
    "beat/min": "/min",
    "breaths/min": "/min",
    "br/min": "/min",
    "1/min": "/min",
    "/min": "/min",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "mm(hg)": "mm[Hg]",
    "cmh2o": "cm[H2O]",
    "degc": "Cel",
    "°c": "Cel",
    "deg c": "Cel",
    "cel": "Cel",
    "degf": "[degF]",
    "°f": "[degF]",
    "percent": "%",
    "mg/dl": "mg/dL",
    "g/dl": "g/dL",
    "ml": "mL",
    "dl": "dL",
    "l": "L",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "mg/l": "mg/L",
    "g/l": "g/L",
    "ng/ml": "ng/mL",
    "pg/ml": "pg/mL",
    "u/l": "U/L",
    "iu/l": "[IU]/L",
    "meq/l": "meq/L",
    "tera.l-1": "10*12/L",
    "giga.l-1": "10*9/L",
    "10^9/l": "10*9/L",
    "10^12/l": "10*12/L",
    "10^3/ul": "10*3/uL",
    "10^6/ul": "10*6/uL",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "in": "[in_i]",
    "kg/m^2": "kg/m2",
    "sec": "s",
    "l/min": "L/min",
    "ml/min": "mL/min",
    "ml/h": "mL/h",
    "ml/hr": "mL/h",
}


def ucum_code(text: str) -> str | None:
    """The UCUM code for a unit written ``text``, or None when medhub does not know it."""
    stripped = text.strip()
    if stripped in COMMON_UCUM:
        return stripped
    return ALIASES.get(stripped.lower())


def quantity_unit(segment: Segment, number: int, repetition: int = 1) -> dict[str, Any]:
    """The ``unit``/``system``/``code`` of a Quantity for a CWE units field ({} when empty)."""
    c = segment.components(number, repetition)
    c += [""] * (6 - len(c))
    code, text, system = c[0].strip(), c[1].strip(), c[2].strip().upper()
    alt_code, alt_system = c[3].strip(), c[5].strip().upper()
    label = text or code
    if not label:
        return {}
    ucum: str | None = None
    if system == "UCUM" and code:
        ucum = code
    elif alt_system == "UCUM" and alt_code:
        ucum = alt_code
    elif system == "MDC" or code.startswith("MDC_DIM_"):
        ucum = ucum_for_mdc_unit(code) or ucum_for_mdc_unit(text)
    else:
        ucum = ucum_code(code) or ucum_code(text)
    if ucum is None:
        return {"unit": label}
    unit = text if text and system == "UCUM" else ucum
    return {"unit": unit, "system": UCUM_SYSTEM, "code": ucum}
