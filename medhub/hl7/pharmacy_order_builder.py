"""Build the pharmacy order for a FHIR R4 MedicationRequest: RDE^O11, or ORM^O01 with RXO.

Pure and clock-free: ``now`` and the message control id are parameters, the
result is the message as UTF-8 ER7 bytes with CR segment ends (no MLLP frame).
The v2-to-FHIR maps (ORC, RXO, RXE, RXR, TQ1 [MedicationRequest]) are applied
in reverse, so :mod:`medhub.hl7.order_mapping` reads the message back.

* ``RDE^O11`` (HL7 v2.5.1 §4A.3.4): MSH PID PV1 ORC RXE {NTE} TQ1 RXR. v2.5.1
  makes TQ1 (TIMING_ENCODED) and RXR required, and RXE-2, RXE-3, RXE-5 and
  RXR-1 required fields: a request without a dose, its unit or a route cannot
  be sent this way and is refused, naming the FHIR element.
* ``ORM^O01`` with RXO, the pharmacy order of v2.3/v2.4 (v2.3 §4.8.1: ORC RXO
  {NTE} {RXR}) for older pharmacy systems: timing is ORC-7 (TQ, v2.3 §4.4),
  RXR-1 is required there too. Send it with the partner's ``version``.

=====================================  ==========================================
FHIR MedicationRequest                 HL7 v2
=====================================  ==========================================
id (or an identifier typed PLAC)       ORC-2 placer order number, namespace medhub
identifier typed FILL; groupIdentifier ORC-3 filler, ORC-4 placer group number
status                                 ORC-5 order status (table 0038)
authoredOn; requester (Practitioner)   ORC-9; ORC-12 ordering provider (XCN)
medication[x] (RxNorm preferred)       RXE-2 / RXO-1 ``rxcui^name^RXN`` (CE)
Medication.form (contained or passed)  RXE-6 / RXO-5 dosage form
dosageInstruction[0].doseAndRate[0]    RXE-3,4,5 / RXO-2,3,4 dose; RXE-23,24 /
                                       RXO-21,22 rate; TQ1-2 dose quantity
dosageInstruction[0].text, additional  RXE-7 / RXO-7 administration instructions
substitution.allowedBoolean false      RXE-9 ``1`` (table 0167) / RXO-9 ``N`` (0161)
dispenseRequest quantity, repeats      RXE-10,11,12 / RXO-11,12,13
dosageInstruction[0].timing, priority  TQ1 / ORC-7 (TQ): :mod:`medhub.hl7.dosage_timing`
dosageInstruction[0] route/site/method RXR-1 (table 0162), RXR-2, RXR-4
note                                   NTE (source P, table 0105)
=====================================  ==========================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

from medhub.errors import ConfigurationError, Hl7Location, Issue, MissingDataError
from medhub.hl7.dosage_timing import dosage_timing
from medhub.hl7.er7 import escape
from medhub.hl7.er7_fields import (
    DELIMITERS,
    HierarchicDesignator,
    ce,
    components,
    cx,
    dtm,
    ei,
    fhir_number,
    fhir_time,
    hd,
    hd_for_system,
    join_fields,
    quantity_units,
    type_code,
    value_error,
    xcn,
    xpns,
)

OrderControl = Literal["NW", "CA", "DC", "XO"]
"""ORC-1 (HL7 table 0119): new order, cancel, discontinue, change."""
PharmacyMessageType = Literal["RDE^O11", "ORM^O01"]
ORDER_CONTROLS: Final = frozenset(get_args(OrderControl))
Resource = Mapping[str, Any]

#: MedicationRequest.status -> ORC-5 (HL7 table 0038); draft and unknown have none.
ORDER_STATUS: Final = {"active": "IP", "on-hold": "HD", "cancelled": "CA", "completed": "CM",
                       "entered-in-error": "ER", "stopped": "DC"}  # fmt: skip
_SEX: Final = {"male": "M", "female": "F", "other": "O", "unknown": "U"}  # table 0001
#: Encounter.class (v3-ActCode) -> PV1-2 patient class (table 0004).
_PATIENT_CLASS: Final = {"EMER": "E", "IMP": "I", "ACUTE": "I", "NONAC": "I", "AMB": "O",
                         "PRENC": "P"}  # fmt: skip
V2_0004: Final = "http://terminology.hl7.org/CodeSystem/v2-0004"
V2_0162: Final = "http://terminology.hl7.org/CodeSystem/v2-0162"
SNOMED: Final = "http://snomed.info/sct"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: SNOMED CT route -> HL7 table 0162 (the v2-to-FHIR route of administration map, reversed).
SNOMED_ROUTES: Final[dict[str, tuple[str, str]]] = {
    "26643006": ("PO", "Oral"), "47625008": ("IV", "Intravenous"),
    "255560000": ("IV", "Intravenous"), "78421000": ("IM", "Intramuscular"),
    "255559005": ("IM", "Intramuscular"), "34206005": ("SC", "Subcutaneous"),
    "263887005": ("SC", "Subcutaneous"), "37161004": ("PR", "Rectal"),
    "16857009": ("VG", "Vaginal"), "54485002": ("OP", "Ophthalmic"), "10547007": ("OT", "Otic"),
    "46713006": ("NS", "Nasal"), "37839007": ("SL", "Sublingual"), "54471007": ("B", "Buccal"),
    "6064005": ("TP", "Topical"), "359540000": ("TP", "Topical"),
    "45890007": ("TD", "Transdermal"), "72607000": ("IT", "Intrathecal"),
    "372464004": ("ID", "Intradermal"),
}  # fmt: skip
_D: Final = DELIMITERS
_MR: Final = "MedicationRequest"
_DOSAGE: Final = f"{_MR}.dosageInstruction[0]"
_DOSE: Final = f"{_DOSAGE}.doseAndRate[0]"


@dataclass(frozen=True, slots=True)
class PharmacyOrderHeader:
    """The MSH parties and the message shape the pharmacy system speaks.

    ``application_ack`` is MSH-16 (table 0155): ``NE`` for the commit ACK only,
    ``AL`` to also get the pharmacy's RRE^O12 / ORR^O02. ``placer_namespace``
    is the EI namespace of ORC-2 (v2.5.1 §4.5.1.2) and of a Practitioner id.
    """

    sending_application: HierarchicDesignator
    receiving_application: HierarchicDesignator
    sending_facility: HierarchicDesignator | None = None
    receiving_facility: HierarchicDesignator | None = None
    message_type: PharmacyMessageType = "RDE^O11"
    version: str = "2.5.1"
    processing_id: str = "P"
    application_ack: Literal["NE", "AL"] = "NE"
    placer_namespace: str = "medhub"

    def __post_init__(self) -> None:
        if self.message_type not in get_args(PharmacyMessageType):
            raise ConfigurationError(f"{self.message_type!r} is not RDE^O11 or ORM^O01")
        if self.message_type == "RDE^O11" and _version(self.version) < (2, 5):
            raise ConfigurationError(
                f"RDE^O11 with TQ1 needs HL7 v2.5 or later, not {self.version!r}; "
                "send ORM^O01 to a v2.3/v2.4 pharmacy system"
            )


def build_pharmacy_order(
    medication_request: Resource,
    patient: Resource,
    *,
    header: PharmacyOrderHeader,
    control_id: str,
    now: datetime,
    order_control: OrderControl = "NW",
    requester: Resource | None = None,
    medication: Resource | None = None,
    encounter: Resource | None = None,
) -> bytes:
    """The pharmacy order for ``medication_request`` (UTF-8 ER7, CR segment ends).

    ``requester``, ``medication`` and ``encounter`` are the resolved
    Practitioner, Medication (for a ``medicationReference`` that is not a
    contained ``#id``) and Encounter; each must be the one the request names.
    Raises :class:`MissingDataError` when a required element is absent and
    :class:`~medhub.errors.InputError` when a value cannot be sent; each issue names the FHIR
    element (``Issue.expression``) and the HL7 field (``Issue.location``).
    """
    request = medication_request
    _check_call(header, control_id, now, order_control)
    _check_reference(request, "subject", patient, "Patient", Hl7Location("PID", 1, 3))
    _check_reference(request, "requester", requester, "Practitioner", Hl7Location("ORC", 1, 12))
    _check_reference(request, "encounter", encounter, "Encounter", Hl7Location("PV1", 1, 2))
    dosages: Sequence[Resource] = request.get("dosageInstruction") or [{}]
    if len(dosages) > 1:
        text = (
            "one RXE/RXO carries one dosage instruction; a request with several "
            "(a tapering dose, say) would reach the pharmacy as its first step only"
        )
        raise value_error(text, f"{_MR}.dosageInstruction[1]", Hl7Location("RXE", 1, 3))
    dosage = dosages[0]
    rde = header.message_type == "RDE^O11"
    timing = dosage_timing(request, dosage)
    segments = [
        _msh(header, control_id, now),
        _pid(patient),
        join_fields("PV1", "1", _patient_class(encounter)),
        _orc(request, header, order_control, requester, "" if rde else timing.tq()),
        _drug(request, dosage, medication, "RXE" if rde else "RXO"),
        *_notes(request),
    ]
    if rde:
        segments.append(join_fields("TQ1", "1", *timing.tq1_fields()))
    segments.append(_rxr(dosage))
    return ("\r".join(segments) + "\r").encode("utf-8")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _missing(text: str, paths: tuple[str, ...], location: Hl7Location) -> MissingDataError:
    issue = Issue(text, code="required", expression=paths, location=location)
    return MissingDataError(text, [issue])


def _check_call(header: PharmacyOrderHeader, control_id: str, now: datetime, control: str) -> None:
    if not 0 < len(control_id) <= 20:  # ST(20) in v2.3-v2.5.1; the ACK must echo it whole
        raise value_error(
            "MSH-10 (message control id) needs 1 to 20 characters", "", _at("MSH", 10)
        )
    if now.tzinfo is None:
        raise value_error("MSH-7 needs a time zone: 'now' is a naive datetime", "", _at("MSH", 7))
    if control not in ORDER_CONTROLS:
        text = f"ORC-1 {control!r} is not one of {sorted(ORDER_CONTROLS)} (HL7 table 0119)"
        raise value_error(text, "", _at("ORC", 1))
    if not hd(header.sending_application):
        raise value_error("MSH-3 (sending application) is empty", "", _at("MSH", 3))


def _at(segment: str, field: int) -> Hl7Location:
    return Hl7Location(segment, 1, field)


def _check_reference(
    request: Resource, element: str, resource: Resource | None, kind: str, where: Hl7Location
) -> None:
    """A resolved resource passed in must be of its type and the one the request points at."""
    if resource is None:
        return
    path = f"{_MR}.{element}"
    if resource.get("resourceType", kind) != kind:
        raise value_error(f"{path} must be a {kind}, not a {resource['resourceType']}", path, where)
    reference = str((request.get(element) or {}).get("reference", "")).split("/_history/")[0]
    rid = resource.get("id")
    if reference and rid and not reference.endswith(f"{kind}/{rid}"):
        raise value_error(f"{path} is {reference!r}, the {kind} given is {kind}/{rid}", path, where)


def _msh(header: PharmacyOrderHeader, control_id: str, now: datetime) -> str:
    """MSH (v2.5.1 §2.14.9): MSH-9 with its structure from v2.3.1 on, AL/NE, UTF-8."""
    code, event = header.message_type.split("^")
    structure = f"{code}_{event}" if _version(header.version) >= (2, 3, 1) else ""
    return join_fields(
        "MSH", _D.encoding_characters, hd(header.sending_application), hd(header.sending_facility),
        hd(header.receiving_application), hd(header.receiving_facility), dtm(now), "",
        components(code, event, structure), escape(control_id, _D),
        escape(header.processing_id, _D), escape(header.version, _D), "", "", "AL",
        header.application_ack, "", "UNICODE UTF-8",
    )  # fmt: skip


def _pid(patient: Resource) -> str:
    """PID-3 every identifier (CX, its system as CX-4), PID-5 the official name, PID-7, PID-8."""
    identifiers = [cx(i) for i in patient.get("identifier", []) if str(i.get("value", "")).strip()]
    if not identifiers:
        text = "PID-3 needs a Patient.identifier with a value"
        raise _missing(text, ("Patient.identifier",), _at("PID", 3))
    names = xpns(patient.get("name", []))[:1]  # the legal name; PID-5 repeats only from v2.3.1
    if not names:
        text = "PID-5 needs a Patient.name with a family or given name"
        raise _missing(text, ("Patient.name",), _at("PID", 5))
    birth = fhir_time(patient.get("birthDate"), "Patient.birthDate", _at("PID", 7))
    sex = _SEX.get(str(patient.get("gender", "")), "")
    rep = _D.repetition
    return join_fields("PID", "1", "", rep.join(identifiers), "", rep.join(names), "", birth, sex)


def _patient_class(encounter: Resource | None) -> str:
    """PV1-2 (table 0004) from Encounter.class; ``U`` (unknown) without an encounter."""
    coding = (encounter or {}).get("class") or {}
    code = str(coding.get("code", ""))
    if coding.get("system") == V2_0004 and code:
        return escape(code, _D)
    return _PATIENT_CLASS.get(code, "U")


def _identifier(request: Resource, kind: str) -> Resource | None:
    found = (i for i in request.get("identifier", []) if i.get("value") and type_code(i) == kind)
    return next(found, None)


def _ei_of(identifier: Resource | None) -> str:
    if not identifier or not identifier.get("value"):
        return ""
    return ei(str(identifier["value"]), hd_for_system(str(identifier.get("system", ""))))


def _placer(request: Resource, header: PharmacyOrderHeader) -> str:
    """ORC-2: an identifier typed PLAC, else the id in medhub's namespace, else an identifier."""
    placer = _identifier(request, "PLAC")
    if placer is not None:
        return _ei_of(placer)
    if request.get("id"):
        return ei(str(request["id"]), HierarchicDesignator(header.placer_namespace))
    any_identifier = next((i for i in request.get("identifier", []) if i.get("value")), None)
    if any_identifier is None:
        text = "ORC-2 (placer order number) needs the MedicationRequest id or an identifier"
        raise _missing(text, (f"{_MR}.id", f"{_MR}.identifier"), _at("ORC", 2))
    return _ei_of(any_identifier)


def _orc(
    request: Resource, header: PharmacyOrderHeader, control: str, requester: Resource | None,
    quantity_timing: str,
) -> str:  # fmt: skip
    """ORC (v2.5.1 §4.5.1): control, placer, filler, group, status, ORC-7 (ORM), ORC-9, ORC-12."""
    authored = fhir_time(request.get("authoredOn"), f"{_MR}.authoredOn", _at("ORC", 9))
    default_authority = HierarchicDesignator(header.placer_namespace)
    return join_fields(
        "ORC", control, _placer(request, header), _ei_of(_identifier(request, "FILL")),
        _ei_of(request.get("groupIdentifier")), ORDER_STATUS.get(str(request.get("status")), ""),
        "", quantity_timing, "", authored, "", "",
        xcn(requester, default_authority) if requester is not None else "",
    )  # fmt: skip


def _medication(
    request: Resource, medication: Resource | None, where: Hl7Location
) -> tuple[Resource, Resource, str]:
    """The drug's CodeableConcept, the Medication it came from ({} if none), and its path."""
    concept = request.get("medicationCodeableConcept")
    if concept:
        return concept, {}, f"{_MR}.medicationCodeableConcept"
    reference = str((request.get("medicationReference") or {}).get("reference", ""))
    if not reference:
        paths = (f"{_MR}.medicationCodeableConcept", f"{_MR}.medicationReference")
        raise _missing("the order needs the drug: MedicationRequest.medication[x]", paths, where)
    found = medication
    if reference.startswith("#"):
        contained = request.get("contained", [])
        found = next((r for r in contained if f"#{r.get('id')}" == reference), None)
    else:
        _check_reference(request, "medicationReference", medication, "Medication", where)
    if found is None:
        text = f"the Medication {reference!r} must be passed to the builder (medication=)"
        raise _missing(text, (f"{_MR}.medicationReference",), where)
    return found.get("code") or {}, found, "Medication.code"


def _dose(rate: Resource, segment: str, first: int) -> list[str]:
    """Give amount min, max and units (RXE-3,4,5 / RXO-2,3,4) from doseQuantity or doseRange."""
    dose_range = rate.get("doseRange") or {}
    path = f"{_DOSE}.doseRange.low" if dose_range else f"{_DOSE}.doseQuantity"
    dose = rate.get("doseQuantity") or dose_range.get("low") or {}
    high = dose_range.get("high") or {}
    low_text = fhir_number(dose.get("value"), f"{path}.value", _at(segment, first))
    high_path = f"{_DOSE}.doseRange.high.value"
    high_text = fhir_number(high.get("value"), high_path, _at(segment, first + 1))
    units = quantity_units(dose) or quantity_units(high)
    if segment == "RXE" and not low_text:  # RXE-3 and RXE-5 are required (v2.5.1 §4A.4.3)
        raise _missing("RXE-3 (give amount) needs the dose", (path,), _at("RXE", 3))
    if segment == "RXE" and not units:
        raise _missing("RXE-5 (give units) needs its unit", (f"{path}.unit",), _at("RXE", 5))
    return [low_text, high_text, units]


def _dispense(request: Resource, segment: str, first: int) -> list[str]:
    """Dispense amount, units and refills (RXE-10,11,12 / RXO-11,12,13)."""
    dispense = request.get("dispenseRequest") or {}
    amount = dispense.get("quantity") or {}
    path = f"{_MR}.dispenseRequest"
    repeats = dispense.get("numberOfRepeatsAllowed")
    whole = isinstance(repeats, int) and not isinstance(repeats, bool) and repeats >= 0
    if repeats is not None and not whole:
        where = _at(segment, first + 2)
        raise value_error(f"{path}.numberOfRepeatsAllowed must be a whole number", path, where)
    value = fhir_number(amount.get("value"), f"{path}.quantity.value", _at(segment, first))
    return [value, quantity_units(amount), "" if repeats is None else str(repeats)]


def _drug(request: Resource, dosage: Resource, medication: Resource | None, segment: str) -> str:
    """RXE (v2.5.1 §4A.4.3) or RXO (v2.3 §4.8.2): drug, dose, instructions, dispense, rate."""
    rde = segment == "RXE"
    where = _at(segment, 2 if rde else 1)
    concept, resource, path = _medication(request, medication, where)
    code = ce(concept, prefer=RXNORM)
    if not code:
        raise _missing(f"{where.terser()} needs the drug's code or text", (path,), where)
    rate = (dosage.get("doseAndRate") or [{}])[0]
    dose = _dose(rate, segment, 3 if rde else 2)
    text = str(dosage.get("text", ""))
    instructions = [components("", text)] if text.strip() else []
    instructions += [c for c in (ce(a) for a in dosage.get("additionalInstruction", [])) if c]
    given = _D.repetition.join(instructions)
    dispensing = _dispense(request, segment, 10 if rde else 11)
    rate_quantity = rate.get("rateQuantity") or {}
    rate_path = f"{_DOSE}.rateQuantity.value"
    rate_text = fhir_number(rate_quantity.get("value"), rate_path, _at(segment, 23 if rde else 21))
    rates = [rate_text, quantity_units(rate_quantity) if rate_text else ""]
    allowed = (request.get("substitution") or {}).get("allowedBoolean")
    form = ce(resource.get("form"))
    if rde:  # RXE-9 (table 0167) 1: substitution not allowed by prescriber
        substitution = "1" if allowed is False else ""
        fields = ["", code, *dose, form, given, "", substitution, *dispensing, *[""] * 10, *rates]
    else:  # RXO-9 (table 0161) N: substitutions not authorized, G: generic allowed
        substitution = {False: "N", True: "G"}.get(allowed, "") if isinstance(allowed, bool) else ""
        fields = [
            code,
            *dose,
            form,
            "",
            given,
            "",
            substitution,
            "",
            *dispensing,
            *[""] * 7,
            *rates,
        ]
    return join_fields(segment, *fields)


def _notes(request: Resource) -> list[str]:
    """NTE (v2.5.1 §2.15.10) per MedicationRequest.note, source P (placer, table 0105)."""
    texts = [str(n.get("text", "")) for n in request.get("note", [])]
    texts = [t for t in texts if t.strip()]
    return [join_fields("NTE", str(n), "P", escape(t, _D)) for n, t in enumerate(texts, start=1)]


def _rxr(dosage: Resource) -> str:
    """RXR (v2.5.1 §4A.4.7): RXR-1 route (table 0162 first), RXR-2 site, RXR-4 method."""
    route = _route(dosage.get("route"))
    if not route:
        text = "RXR-1 (route) is required, and the dosage instruction has no route"
        raise _missing(text, (f"{_DOSAGE}.route",), _at("RXR", 1))
    return join_fields("RXR", route, ce(dosage.get("site")), "", ce(dosage.get("method")))


def _route(concept: Resource | None) -> str:
    if not concept:
        return ""
    codings = [c for c in concept.get("coding", []) if c.get("code")]
    if any(c.get("system") == V2_0162 for c in codings):
        return ce(concept, prefer=V2_0162)
    for coding in codings:
        if coding.get("system") == SNOMED and str(coding["code"]) in SNOMED_ROUTES:
            v2_code, name = SNOMED_ROUTES[str(coding["code"])]
            snomed = (str(coding["code"]), str(coding.get("display", "")), "SCT")
            return components(v2_code, name, "HL70162", *snomed)
    return ce(concept)
