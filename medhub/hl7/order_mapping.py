"""ORM^O01 and OML^O21 orders -> FHIR R4 ServiceRequest / MedicationRequest (pure).

Follows the v2-to-FHIR ORC[ServiceRequest], OBR[ServiceRequest] and
RXO[MedicationRequest] maps. Each ORC starts one order; the detail segment
after it decides the resource: RXO or RXE -> MedicationRequest, otherwise
(OBR, or a detail medhub does not map such as ODS/RQD) -> ServiceRequest.

======================  ===================================================
ORC-2 / OBR-2           identifier, type PLAC (placer order number)
ORC-3 / OBR-3           identifier, type FILL (filler order number)
ORC-4                   ServiceRequest.requisition / MedicationRequest.groupIdentifier
ORC-1, ORC-5            status (see :func:`order_status`)
ORC-9                   authoredOn
ORC-12 (else OBR-16)    requester: a Practitioner found or created by its XCN id
                        (:mod:`medhub.hl7.practitioner_mapping`, as the ADT mappers)
OBR-4                   ServiceRequest.code;  OBR-31 reasonCode;  NTE note
RXO-1 / RXE-2           medicationCodeableConcept
RXO-2,3,4 / RXE-3,4,5   dosageInstruction.doseAndRate (dose, or range min-max)
RXO-7 / RXE-7           dosageInstruction.text
RXO-11,12,13 /          dispenseRequest quantity and numberOfRepeatsAllowed
RXE-10,11,12
======================  ===================================================

An order must carry a placer or a filler number: it is how a resend updates
the stored order and how a cancel (ORC-1 CA) finds it. OML^O21's prior
results (PID/PV1/AL1 again after the first ORC, v2.5.1 §4.4.6) describe
earlier orders and are not applied.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from medhub.errors import Hl7Location
from medhub.hl7.datatype_mapping import codeable_concept, fhir_datetime, sender_offset
from medhub.hl7.er7 import Message, Segment
from medhub.hl7.hl7_datatypes import (
    ei_identifier,
    field_error,
    field_path,
    parse_nm,
    sender_system,
)
from medhub.hl7.patient_mapping import pid_to_patient
from medhub.hl7.practitioner_mapping import xcn_person
from medhub.hl7.ucum_units import quantity_unit

OrderKind = Literal["ServiceRequest", "MedicationRequest"]

#: HL7 table 0119 (order control codes, v2.5.1 + MC from v2.6).
ORDER_CONTROLS: Final = frozenset(
    "AF CA CH CN CR DC DE DF DR FU HD HR LI MC NA NW OC OD OE OF OH OK OP OR PA PR PY RE RF RL "
    "RO RP RQ RR RU SC SN SR SS UA UC UD UF UH UM UN UR UX XO XR XX".split()
)
#: ORC-1 codes that are themselves a status change; they win over ORC-5.
_CONTROL_STATUS: Final[dict[str, tuple[str, str]]] = {
    **dict.fromkeys(("CA", "OC", "CR"), ("revoked", "cancelled")),
    **dict.fromkeys(("DC", "OD", "DR"), ("revoked", "stopped")),
    **dict.fromkeys(("HD", "HR", "OH"), ("on-hold", "on-hold")),
    **dict.fromkeys(("RL", "OR"), ("active", "active")),
}
#: ORC-1 codes that imply an active order when ORC-5 says nothing.
_ACTIVE_CONTROLS: Final = frozenset("NW OK OE XO XR XX RO CH PA RE".split())
#: ORC-5 (HL7 table 0038) -> (ServiceRequest.status, MedicationRequest.status).
ORDER_STATUS: Final[dict[str, tuple[str, str]]] = {
    "A": ("active", "active"),
    "CA": ("revoked", "cancelled"),
    "CM": ("completed", "completed"),
    "DC": ("revoked", "stopped"),
    "ER": ("entered-in-error", "entered-in-error"),
    "HD": ("on-hold", "on-hold"),
    "IP": ("active", "active"),
    "RP": ("revoked", "stopped"),
    "SC": ("active", "active"),
}
#: ORC-1 codes that act on an order the receiver must already know.
CANCEL_CONTROLS: Final = frozenset({"CA", "DC"})
_PRIOR_RESULT_START: Final = frozenset({"PID", "PD1", "PV1", "PV2", "AL1"})
#: Field numbers of a pharmacy segment: code, dose min, dose max, dose units,
#: administration instructions, dispense amount, dispense units, refills, pharmacy note.
_PHARMACY_FIELDS: Final[dict[str, tuple[int, ...]]] = {
    "RXO": (1, 2, 3, 4, 7, 11, 12, 13, 6),
    "RXE": (2, 3, 4, 5, 7, 10, 11, 12, 0),
}


@dataclass(slots=True)
class MappedOrder:
    """One order (ORC + detail), before its subject and requester are linked."""

    orc: Segment
    occurrence: int
    control: str
    detail: Segment | None = None
    detail_occurrence: int = 0
    notes: list[str] = field(default_factory=list)
    resource: dict[str, Any] = field(default_factory=dict)
    requester: dict[str, Any] | None = None
    requester_display: str = ""
    requester_location: Hl7Location = field(default_factory=lambda: Hl7Location("ORC"))

    @property
    def kind(self) -> OrderKind:
        if self.detail is not None and self.detail.name in _PHARMACY_FIELDS:
            return "MedicationRequest"
        return "ServiceRequest"

    @property
    def key_location(self) -> Hl7Location:
        return Hl7Location("ORC", self.occurrence, 2)

    @property
    def must_exist(self) -> bool:
        """A cancel or discontinue request for an order the receiver must already have."""
        return self.control in CANCEL_CONTROLS


@dataclass(slots=True)
class OrderMessage:
    patient: dict[str, Any]
    orders: list[MappedOrder]


def order_status(control: str, order_status_code: str, kind: OrderKind) -> str | None:
    """The request status: ORC-1 when it is a status action, else ORC-5, else ORC-1's default.

    None means "no status in this message" (e.g. ORC-1 SC with no ORC-5): an
    update keeps the stored status, a new order is ``unknown``.
    """
    index = 1 if kind == "MedicationRequest" else 0
    if control in _CONTROL_STATUS:
        return _CONTROL_STATUS[control][index]
    if order_status_code in ORDER_STATUS:
        return ORDER_STATUS[order_status_code][index]
    if control in _ACTIVE_CONTROLS:
        return "active"
    return None


def _control(orc: Segment, occurrence: int) -> str:
    """ORC-1, checked against table 0119; ORC-5 is checked (table 0038) only where it decides.

    Senders put ORC-1 codes into ORC-5 (``NW|…|NW``); where ORC-1 alone gives
    the status such a value is ignored, where ORC-1 needs ORC-5 (``SC``) it is refused.
    """
    location = Hl7Location("ORC", occurrence, 1)
    control = orc.value(1).strip().upper()
    if not control:
        raise field_error(
            f"{field_path(location)} (order control) is empty", location, 101, required=True
        )
    if control not in ORDER_CONTROLS:
        raise field_error(
            f"{field_path(location)} {control!r} is not an order control code (HL7 table 0119)",
            location,
            103,
        )
    status = orc.value(5).strip().upper()
    needs_status = control not in _CONTROL_STATUS and control not in _ACTIVE_CONTROLS
    if status and status not in ORDER_STATUS and needs_status:
        location = Hl7Location("ORC", occurrence, 5)
        raise field_error(
            f"{field_path(location)} {status!r} is not an order status (HL7 table 0038), "
            f"and ORC-1 {control!r} does not say the status either",
            location,
            103,
        )
    return control


def _walk(message: Message) -> tuple[dict[str, Any] | None, list[MappedOrder]]:
    counts: Counter[str] = Counter()
    patient: dict[str, Any] | None = None
    orders: list[MappedOrder] = []
    current: MappedOrder | None = None
    notes_open = False
    for segment in message.segments:
        counts[segment.name] += 1
        occurrence = counts[segment.name]
        name = segment.name
        if orders and name in _PRIOR_RESULT_START:
            break  # OML^O21 PRIOR_RESULT: earlier orders for context, not new orders
        if name == "PID" and patient is None:
            patient = pid_to_patient(Message(message.delimiters, [message.msh, segment]))
        elif name == "ORC":
            current = MappedOrder(segment, occurrence, _control(segment, occurrence))
            orders.append(current)
        elif name in ("OBR", "RXO", "RXE"):
            if current is None or current.detail is not None:
                location = Hl7Location(name, occurrence)
                raise field_error(
                    f"{name}^{occurrence} is not preceded by its own ORC segment "
                    "(each order of an ORM^O01/OML^O21 starts with ORC)",
                    location,
                    100,
                )
            current.detail, current.detail_occurrence = segment, occurrence
        elif name == "NTE" and notes_open and current is not None:
            text = "\n".join(segment.value(3, r) for r in range(1, len(segment.repetitions(3)) + 1))
            if text.strip():
                current.notes.append(text.strip())
        if name not in ("NTE", "PRT"):
            notes_open = name in ("OBR", "RXO", "RXE")
    return patient, orders


def _identifiers(order: MappedOrder, sender: str) -> list[dict[str, Any]]:
    identifiers = []
    for number, type_code in ((2, "PLAC"), (3, "FILL")):
        obr = order.detail if order.detail is not None and order.detail.name == "OBR" else None
        for segment in (order.orc, obr):
            if segment is None:
                continue
            identifier = ei_identifier(segment, number, default_system=sender, type_code=type_code)
            if identifier is not None:
                identifiers.append(identifier)
                break
    if not identifiers:
        location = order.key_location
        raise field_error(
            f"ORC^{order.occurrence} has neither a placer (ORC-2/OBR-2) nor a filler "
            "(ORC-3/OBR-3) order number, so the order cannot be found again",
            location,
            101,
            required=True,
        )
    return identifiers


def _requester(order: MappedOrder) -> None:
    """ORC-12 ordering provider, else OBR-16 (XCN[Practitioner], shared with the ADT mappers)."""
    obr = order.detail if order.detail is not None and order.detail.name == "OBR" else None
    for segment, number, occurrence in (
        (order.orc, 12, order.occurrence),
        (obr, 16, order.detail_occurrence),
    ):
        person = xcn_person(segment, number, sequence=occurrence) if segment is not None else None
        if person is not None:
            order.requester = person.practitioner
            order.requester_display = person.display
            order.requester_location = person.location
            return


def _quantity(segment: Segment, value: int, units: int, location: Hl7Location) -> dict[str, Any]:
    return {"value": parse_nm(segment.value(value), location), **quantity_unit(segment, units)}


def _medication(order: MappedOrder, request: dict[str, Any]) -> None:
    """RXO/RXE -> the medication, dosage and dispense parts of a MedicationRequest."""
    rx, n = order.detail, order.detail_occurrence
    assert rx is not None
    code, low, high, units, text, amount, amount_units, refills, note = _PHARMACY_FIELDS[rx.name]
    concept = codeable_concept(rx, code)
    if concept is None:
        location = Hl7Location(rx.name, n, code)
        raise field_error(
            f"{field_path(location)} (requested give code) is empty", location, 101, required=True
        )
    request["medicationCodeableConcept"] = concept
    dosage: dict[str, Any] = {}
    instructions = rx.value(text, 1, 2).strip() or rx.value(text, 1, 1).strip()
    if instructions:
        dosage["text"] = instructions
    if rx.value(low).strip():
        dose = _quantity(rx, low, units, Hl7Location(rx.name, n, low))
        if rx.value(high).strip() and rx.value(high).strip() != rx.value(low).strip():
            top = _quantity(rx, high, units, Hl7Location(rx.name, n, high))
            dosage["doseAndRate"] = [{"doseRange": {"low": dose, "high": top}}]
        else:
            dosage["doseAndRate"] = [{"doseQuantity": dose}]
    if dosage:
        request["dosageInstruction"] = [dosage]
    dispense: dict[str, Any] = {}
    if rx.value(amount).strip():
        dispense["quantity"] = _quantity(rx, amount, amount_units, Hl7Location(rx.name, n, amount))
    if rx.value(refills).strip():
        location = Hl7Location(rx.name, n, refills)
        repeats = parse_nm(rx.value(refills), location)
        if not isinstance(repeats, int) or repeats < 0:
            raise field_error(f"{field_path(location)} must be a whole number", location, 102)
        dispense["numberOfRepeatsAllowed"] = repeats
    if dispense:
        request["dispenseRequest"] = dispense
    if note and rx.value(note, 1, 2).strip():
        order.notes.insert(0, rx.value(note, 1, 2).strip())


def _resource(order: MappedOrder, sender: str, offset: str | None) -> dict[str, Any]:
    kind = order.kind
    request: dict[str, Any] = {"resourceType": kind}
    request["identifier"] = _identifiers(order, sender)
    status = order_status(order.control, order.orc.value(5).strip().upper(), kind)
    if status is not None:
        request["status"] = status
    request["intent"] = "order"
    requisition = ei_identifier(order.orc, 4, default_system=sender, type_code="PGN")
    if kind == "MedicationRequest":
        _medication(order, request)
        if requisition is not None:
            request["groupIdentifier"] = requisition
    else:
        if requisition is not None:
            request["requisition"] = requisition
        if order.detail is not None and order.detail.name == "OBR":
            code = codeable_concept(order.detail, 4)
            if code is not None:
                request["code"] = code
            reasons = [
                concept
                for rep in range(1, len(order.detail.repetitions(31)) + 1)
                if (concept := codeable_concept(order.detail, 31, rep)) is not None
            ]
            if reasons:
                request["reasonCode"] = reasons
    if order.orc.value(9).strip():
        location = Hl7Location("ORC", order.occurrence, 9)
        request["authoredOn"] = fhir_datetime(order.orc.value(9), location, default_offset=offset)
    if order.notes:
        request["note"] = [{"text": text} for text in order.notes]
    return request


def map_orders(message: Message) -> OrderMessage:
    """Map an ORM^O01 / OML^O21; raises InputError naming the failing field."""
    patient, orders = _walk(message)
    if patient is None:
        text = "the message has no PID segment: an order needs its patient"
        raise field_error(text, Hl7Location("PID"), 100, required=True)
    if not orders:
        text = "the message has no ORC segment: there is no order in it"
        raise field_error(text, Hl7Location("ORC"), 100, required=True)
    sender = sender_system(message.msh)
    offset = sender_offset(message)
    for order in orders:
        _requester(order)
        order.resource = _resource(order, sender, offset)
    return OrderMessage(patient, orders)
