"""Field values for the outbound HL7 v2 messages medhub builds (ER7), shared by the builders.

The builders (:mod:`medhub.hl7.pcd01_builder`, :mod:`medhub.hl7.pharmacy_order_builder`)
write segments as text with the default delimiters ``|^~\\&``. What they have
in common is here:

* :func:`join_fields` / :func:`components`: a segment or a composite from its parts,
  every value escaped (HL7 v2.5.1 §2.7) and trailing empty ones left out
  (§2.5.3), so a ``|`` or ``^`` in a name or a drug text cannot shift fields;
* :class:`HierarchicDesignator` and :func:`hd` (HD, v2.5.1 Appendix 2A),
  :func:`dtm` (DTM, §2.A.22);
* the inverse of the inbound data type maps (:mod:`medhub.hl7.datatype_mapping`,
  :mod:`medhub.hl7.practitioner_mapping`), so what medhub sends maps back to
  the FHIR it came from: :func:`dtm_from_fhir` (``dateTime`` -> DTM, precision
  and offset kept), :func:`hd_for_system` (``Identifier.system`` -> assigning
  authority, the inverse of :func:`medhub.clinical.identifiers.authority_system`),
  :func:`coding_system_name` (code system URI -> table 0396 name), :func:`ce`
  (CodeableConcept -> CE), :func:`quantity_units` (Quantity unit -> CE),
  :func:`cx`, :func:`ei`, :func:`xpn` and :func:`xcn`.

The FHIR inputs are JSON objects (``Mapping[str, Any]``) already validated as
FHIR R4, as the resource store keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from medhub.clinical.identifiers import LOCAL_AUTHORITY_PREFIX, V2_0203
from medhub.errors import Hl7Location, InputError, Issue
from medhub.hl7.datatype_mapping import CODING_SYSTEMS, LOCAL_CODING_SYSTEM_PREFIX
from medhub.hl7.er7 import Delimiters, escape

DELIMITERS: Final = Delimiters()
_D: Final = DELIMITERS

#: Where table 0396 has several names for one system, the one medhub sends.
_PREFERRED_NAMES: Final[dict[str, str]] = {
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RXN",
    "http://hl7.org/fhir/sid/icd-9-cm": "I9C",
}
_SYSTEM_NAMES: Final[dict[str, str]] = {
    **{uri: name for name, uri in reversed(CODING_SYSTEMS.items())},
    **_PREFERRED_NAMES,
}
_V2_TABLE: Final = re.compile(r"^http://terminology\.hl7\.org/CodeSystem/v2-(\d{4})$")
_FHIR_DATETIME: Final = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?$"
)


@dataclass(frozen=True, slots=True)
class HierarchicDesignator:
    """An HD (HL7 v2.5.1 Appendix 2A): namespace id, universal id and its type (table 0301)."""

    namespace: str
    universal_id: str = ""
    universal_id_type: str = ""


def join_fields(*fields: str) -> str:
    """A segment from its (already escaped) fields, trailing empty ones left out (§2.5.3)."""
    end = len(fields)
    while end > 1 and fields[end - 1] == "":
        end -= 1
    return _D.field.join(fields[:end])


def components(*values: str) -> str:
    """Escaped components joined with ``^``, trailing empty ones dropped."""
    parts = [escape(v, _D) for v in values]
    while parts and parts[-1] == "":
        parts.pop()
    return _D.component.join(parts)


def hd(designator: HierarchicDesignator | None, separator: str = "^") -> str:
    """An HD as a field (``^``) or, inside a CX/XCN/EI, as sub-components (``&``)."""
    if designator is None:
        return ""
    values = (designator.namespace, designator.universal_id, designator.universal_id_type)
    parts = [escape(v, _D) for v in values]
    while parts and parts[-1] == "":
        parts.pop()
    return separator.join(parts)


def decimal_text(value: object) -> str | None:
    """A number as NM (HL7 v2.5.1 Appendix 2A): plain digits, never an exponent; None if not one.

    Booleans, NaN and infinities are not numbers here.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    decimal = value if isinstance(value, Decimal) else Decimal(repr(value))
    return format(decimal, "f") if decimal.is_finite() else None


def dtm(moment: datetime) -> str:
    """DTM with offset (HL7 v2.5.1 §2.A.22), in UTC, fractions to 1/10 000 s."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y%m%d%H%M%S")
    if utc.microsecond:
        text += f".{utc.microsecond // 100:04d}"
    return text + "+0000"


def dtm_from_fhir(value: str) -> str | None:
    """A FHIR R4 date/dateTime/instant as a DTM with the same precision and offset.

    ``2015-01-15`` -> ``20150115``; ``2015-01-15T10:30:00.5+01:00`` ->
    ``20150115103000.5+0100`` (§2.A.22 allows four fraction digits). None when
    ``value`` is not a FHIR date/dateTime (FHIR requires a zone with a time of day).
    """
    match = _FHIR_DATETIME.match(value.strip())
    if match is None:
        return None
    p = match.groupdict()
    try:
        datetime(
            int(p["y"]), int(p["mo"] or 1), int(p["d"] or 1),
            int(p["h"] or 0), int(p["mi"] or 0), min(int(p["s"] or 0), 59),
        )  # fmt: skip
    except ValueError:
        return None
    text = "".join(p[k] or "" for k in ("y", "mo", "d", "h", "mi", "s"))
    if p["f"]:
        text += "." + p["f"][:4]
    if p["tz"]:
        text += "+0000" if p["tz"] == "Z" else p["tz"].replace(":", "")
    return text


def value_error(text: str, path: str, location: Hl7Location) -> InputError:
    """A FHIR value that cannot be sent: the issue names the element and the HL7 field."""
    issue = Issue(text, expression=(path,) if path else (), location=location, hl7_error_code=102)
    return InputError(text, [issue])


def fhir_time(value: object, path: str, location: Hl7Location) -> str:
    """:func:`dtm_from_fhir` of an element (``""`` when absent), else InputError naming it."""
    if not value:
        return ""
    text = dtm_from_fhir(str(value))
    if text is None:
        raise value_error(f"{path} {value!r} is not a FHIR date or dateTime", path, location)
    return text


def fhir_number(value: object, path: str, location: Hl7Location) -> str:
    """:func:`decimal_text` of an element (``""`` when absent), else InputError naming it."""
    if value is None:
        return ""
    text = decimal_text(value)
    if text is None:
        raise value_error(f"{path} {value!r} is not a finite number", path, location)
    return text


def hd_for_system(system: str) -> HierarchicDesignator | None:
    """The assigning authority for a FHIR ``Identifier.system`` (None without one).

    The inverse of :func:`medhub.clinical.identifiers.authority_system`:
    ``urn:oid:`` -> universal id of type ISO, ``urn:uuid:`` -> UUID, medhub's
    local ``urn:medhub:assigning-authority:<ns>`` -> namespace id, any other
    URI -> universal id of type URI (table 0301).
    """
    system = system.strip()
    if not system:
        return None
    if system.startswith("urn:oid:"):
        return HierarchicDesignator("", system.removeprefix("urn:oid:"), "ISO")
    if system.startswith("urn:uuid:"):
        return HierarchicDesignator("", system.removeprefix("urn:uuid:"), "UUID")
    if system.startswith(LOCAL_AUTHORITY_PREFIX):
        return HierarchicDesignator(system.removeprefix(LOCAL_AUTHORITY_PREFIX))
    return HierarchicDesignator("", system, "URI")


def coding_system_name(system: str) -> str:
    """The HL7 table 0396 name for a FHIR code system URI (CE-3/CWE-3), ``""`` for none.

    RxNorm -> ``RXN``, LOINC -> ``LN``, SNOMED CT -> ``SCT``, UCUM -> ``UCUM``;
    ``http://terminology.hl7.org/CodeSystem/v2-0162`` -> ``HL70162``; a name
    medhub kept from a v2 sender (``urn:medhub:hl7:coding-system:99ABC``) ->
    that name. Any other URI -> ``L`` (local code, table 0396): CE-3 is an ID of
    at most 20 characters, and strict receivers refuse a URI there.
    """
    system = system.strip()
    if not system:
        return ""
    if system in _SYSTEM_NAMES:
        return _SYSTEM_NAMES[system]
    table = _V2_TABLE.match(system)
    if table:
        return f"HL7{table.group(1)}"
    local = system.removeprefix(LOCAL_CODING_SYSTEM_PREFIX)
    return local if local != system and 0 < len(local) <= 20 else "L"


Resource = Mapping[str, Any]


def trimmed(parts: Sequence[str], separator: str = "^") -> str:
    """Already escaped parts joined by ``separator``, trailing empty ones left out."""
    end = len(parts)
    while end and parts[end - 1] == "":
        end -= 1
    return separator.join(parts[:end])


def _text(value: object) -> str:
    return escape("" if value is None else str(value), _D)


def type_code(identifier: Resource) -> str:
    """The identifier type (HL7 table 0203) of a FHIR Identifier, ``""`` without one."""
    for coding in (identifier.get("type") or {}).get("coding", []):
        if coding.get("system") == V2_0203 and coding.get("code"):
            return str(coding["code"])
    return ""


def cx(identifier: Resource) -> str:
    """Identifier -> CX (§2.A.14): value, CX-4 its system as HD sub-components, CX-5 type."""
    authority = hd(hd_for_system(str(identifier.get("system", ""))), _D.subcomponent)
    return trimmed(
        [_text(identifier.get("value")), "", "", authority, _text(type_code(identifier))]
    )


def ei(value: str, authority: HierarchicDesignator | None) -> str:
    """EI (§2.A.24): entity id ^ namespace ^ universal id ^ its type."""
    return trimmed([_text(value), hd(authority)])


def _best_name(names: Sequence[Resource]) -> Resource:
    """The ``official`` name first: HL7 sends the legal name in the first repetition."""
    ordered = sorted(names, key=lambda n: n.get("use") != "official")
    return ordered[0] if ordered else {}


def _name_parts(name: Resource) -> list[str]:
    given = [str(g) for g in name.get("given", [])]
    return [
        _text(name.get("family")),
        _text(given[0] if given else ""),
        _text(" ".join(given[1:])),
        _text(" ".join(name.get("suffix", []))),
        _text(" ".join(name.get("prefix", []))),
    ]


#: HumanName.use -> XPN-7 name type (HL7 table 0200), the inverse of the PID-5 map.
NAME_TYPE: Final = {
    "official": "L",
    "usual": "D",
    "maiden": "M",
    "nickname": "N",
    "anonymous": "A",
    "temp": "T",
}


def xpn(name: Resource) -> str:
    """HumanName -> XPN (Appendix 2A): family, given, further given, suffix, prefix, type (0200).

    ``""`` for a name with neither a family nor a given name (XPN has no text).
    """
    parts = _name_parts(name)
    if not (parts[0] + parts[1]).strip():
        return ""
    return trimmed([*parts, "", _text(NAME_TYPE.get(str(name.get("use", "")), ""))])


def xpns(names: Sequence[Resource]) -> list[str]:
    """Every HumanName that has a family or given name, the ``official`` one first."""
    ordered = sorted(names, key=lambda n: n.get("use") != "official")
    return [x for x in (xpn(n) for n in ordered) if x]


def xcn(person: Resource, default_authority: HierarchicDesignator | None = None) -> str:
    """Practitioner -> XCN (§2.A.89), as :func:`medhub.hl7.practitioner_mapping.xcn_person`
    reads it: XCN-1 the first identifier (else the resource id, with
    ``default_authority``), XCN-2..6 the name, XCN-9 the authority, XCN-13 the type.
    """
    identifier = next((i for i in person.get("identifier", []) if i.get("value")), None)
    if identifier is not None:
        value = str(identifier["value"])
        authority = hd_for_system(str(identifier.get("system", "")))
        kind = type_code(identifier)
    else:
        value, kind = str(person.get("id", "")), ""
        authority = default_authority if value else None
    names = _name_parts(_best_name(person.get("name", [])))
    sub = _D.subcomponent
    return trimmed([_text(value), *names, "", "", hd(authority, sub), "", "", "", _text(kind)])


def ce(concept: Resource | None, prefer: str = "") -> str:
    """CodeableConcept -> CE (§2.A.8): the first coding (one of system ``prefer`` if any),
    a second coding as the alternate triplet, the text as CE-2 when the coding has no
    display or there is no coding. ``""`` when there is neither a code nor a text.
    """
    if not concept:
        return ""
    codings = [c for c in concept.get("coding", []) if str(c.get("code", "")).strip()]
    codings.sort(key=lambda c: c.get("system") != prefer)
    text = str(concept.get("text", ""))
    parts: list[str] = []
    for coding in codings[:2]:
        display = str(coding.get("display", "")) or (text if not parts else "")
        parts += [str(coding["code"]), display, coding_system_name(str(coding.get("system", "")))]
    return components(*parts) if parts else components("", text)


def quantity_units(quantity: Resource, separator: str = "^") -> str:
    """A Quantity's unit as CE: ``mg^^UCUM`` (code, the unit text if it differs, system).

    ``separator="&"`` for a CE inside a component (the units of a CQ).
    A unit with no code is sent as text (CE-2): medhub does not guess a code.
    """
    code, unit = str(quantity.get("code", "")), str(quantity.get("unit", ""))
    if code:
        parts = [code, unit if unit != code else "", str(quantity.get("system", ""))]
        parts[2] = coding_system_name(parts[2])
    else:
        parts = ["", unit]
    return trimmed([escape(p, _D) for p in parts], separator)
