"""Build IHE PCD-01 ("Communicate PCD Data") ORU^R01 messages from device observations.

Pure and clock-free: ``now`` and the message control id are parameters, the
result is the message as UTF-8 ER7 bytes with CR segment ends (no MLLP frame).

What IHE PCD Technical Framework Vol. 2 (rev. 9.0, §3.1 and Appendix B) asks
of a Device Observation Reporter, and where it is done here:

* MSH-9 ``ORU^R01^ORU_R01``, MSH-12 ``2.6``, MSH-15 ``AL``/MSH-16 ``NE``
  (accept ACK always, no application ACK), MSH-18 ``UNICODE UTF-8``, MSH-21
  the PCD-01 profile ``IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO``.
* Every time stamp is a DTM with a time-zone offset (§B.8); here UTC ``+0000``.
* PID-3 (CX, repeating) and PID-5 (XPN) are required; PV1 carries the
  patient class and the point of care (§B.5, §B.6).
* One OBR for the report, OBR-4 ``182777000^monitoring of patient^SNOMED-CT``
  as in the framework's examples, OBR-7 the earliest observation time.
* One OBX per metric: OBX-3 the IEEE 11073-10101 (MDC) code ``code^text^MDC``,
  OBX-4 the containment ``<MDS>.<VMD>.<CHAN>.<METRIC>`` (§B.8.4), OBX-5 the
  value, OBX-6 the unit as UCUM ``unit^^UCUM`` (§B.8.6 allows UCUM in place of
  MDC unit codes), OBX-11 the result status, OBX-14 the observation time and
  OBX-18 the device's EUI-64 ``<EUI-64>^EUI-64`` (§B.8.8).

Every value is escaped (HL7 v2.5.1 §2.7) with :func:`medhub.hl7.er7.escape`,
so a ``|`` or ``^`` in a name or a text value cannot shift fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from medhub.errors import Hl7Location, InputError, Issue, MissingDataError
from medhub.hl7.er7 import Delimiters, escape
from medhub.hl7.er7_fields import HierarchicDesignator as HierarchicDesignator
from medhub.hl7.er7_fields import components as components
from medhub.hl7.er7_fields import decimal_text
from medhub.hl7.er7_fields import dtm as dtm
from medhub.hl7.er7_fields import hd as hd
from medhub.hl7.er7_fields import join_fields as join_fields

PCD01_PROFILE: Final = ("IHE_PCD_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.1.1.1", "ISO")
MONITORING_OF_PATIENT: Final = ("182777000", "monitoring of patient", "SNOMED-CT")
VERSION: Final = "2.6"
EUI64_PATTERN: Final = re.compile(r"^[0-9A-Fa-f]{16}$")
_D: Final = Delimiters()

Number = int | float | Decimal


@dataclass(frozen=True, slots=True)
class PatientIdentifier:
    """One PID-3 repetition (CX): the id, its assigning authority, its type (table 0203)."""

    value: str
    authority: HierarchicDesignator
    type_code: str = "MR"


@dataclass(frozen=True, slots=True)
class PcdPatient:
    """Who the observations are about, and where (PV1-3 point of care / room / bed)."""

    identifiers: tuple[PatientIdentifier, ...]
    family: str
    given: str = ""
    middle: str = ""
    birth_date: date | None = None
    sex: str = ""
    patient_class: str = "I"
    point_of_care: str = ""
    room: str = ""
    bed: str = ""


@dataclass(frozen=True, slots=True)
class Containment:
    """Where a metric sits in the device's IEEE 11073 containment tree (MDS.VMD.CHAN.METRIC)."""

    mds: int
    vmd: int
    channel: int
    metric: int

    def render(self) -> str:
        return f"{self.mds}.{self.vmd}.{self.channel}.{self.metric}"


@dataclass(frozen=True, slots=True)
class DeviceObservation:
    """One metric value from one device.

    ``code``/``text`` are the IEEE 11073-10101 term (e.g. ``150456`` /
    ``MDC_PULS_OXIM_SAT_O2``); ``unit`` is a UCUM code (``%``, ``/min``,
    ``mm[Hg]``). A number becomes an NM value, a string an ST value.
    """

    device_eui64: str
    containment: Containment
    code: str
    text: str
    value: Number | str
    unit: str
    observed_at: datetime
    result_status: str = "R"


@dataclass(frozen=True, slots=True)
class Pcd01Header:
    """The MSH parties: the Device Observation Reporter and the Consumer it reports to."""

    sending_application: HierarchicDesignator
    receiving_application: HierarchicDesignator
    sending_facility: HierarchicDesignator | None = None
    receiving_facility: HierarchicDesignator | None = None
    processing_id: str = "P"


def build_pcd01_oru(
    patient: PcdPatient,
    observations: Sequence[DeviceObservation],
    *,
    header: Pcd01Header,
    control_id: str,
    now: datetime,
) -> bytes:
    """The PCD-01 ORU^R01 for ``observations`` of ``patient`` (UTF-8 ER7, CR segment ends).

    Raises :class:`MissingDataError` when a required element is absent and
    :class:`InputError` when a value cannot be represented (an EUI-64 that is
    not 16 hex digits, a number that is not finite, a negative containment).
    """
    _check(patient, observations, control_id)
    earliest = min(o.observed_at for o in observations)
    segments = [
        msh_segment(header, control_id, now),
        pid_segment(patient),
        pv1_segment(patient),
        join_fields(
            "OBR",
            "1",
            "",
            components(control_id, header.sending_application.namespace),
            components(*MONITORING_OF_PATIENT),
            "",
            "",
            dtm(earliest),
        ),
    ]
    for number, observation in enumerate(observations, start=1):
        segments.append(_obx(number, observation))
    return ("\r".join(segments) + "\r").encode("utf-8")


def _check(patient: PcdPatient, observations: Sequence[DeviceObservation], control_id: str) -> None:
    if not control_id:
        raise missing_data("MSH-10 (message control id) is required", "MSH", 10)
    if not patient.identifiers or not all(i.value for i in patient.identifiers):
        raise missing_data("PID-3 needs at least one patient identifier with a value", "PID", 3)
    if not patient.family:
        raise missing_data("PID-5 needs the patient's family name", "PID", 5)
    if not observations:
        raise missing_data("a PCD-01 report needs at least one observation", "OBX", 0)
    for number, observation in enumerate(observations, start=1):
        if not EUI64_PATTERN.match(observation.device_eui64):
            raise invalid_value(
                f"OBX-18 device EUI-64 {observation.device_eui64!r} is not 16 hex digits",
                Hl7Location("OBX", number, 18),
            )
        parts = observation.containment
        if min(parts.mds, parts.vmd, parts.channel, parts.metric) < 0:
            raise invalid_value(
                f"OBX-4 containment {parts.render()} has a negative part",
                Hl7Location("OBX", number, 4),
            )
        if not observation.code:
            raise missing_data("OBX-3 needs the MDC code", "OBX", 3, number)
        if observation.observed_at.tzinfo is None:
            raise invalid_value(
                "OBX-14 observation time needs a time zone", Hl7Location("OBX", number, 14)
            )


# -- ER7 pieces shared with the other IHE PCD builders (medhub.hl7.pcd04_builder); the
# generic ones (join_fields, components, hd, dtm) live in medhub.hl7.er7_fields ----------


def missing_data(text: str, segment: str, field: int, sequence: int = 1) -> MissingDataError:
    """A required element is absent (table 0357 code 101 through ``code="required"``)."""
    location = Hl7Location(segment, sequence, field)
    return MissingDataError(text, [Issue(text, code="required", location=location)])


def invalid_value(text: str, location: Hl7Location) -> InputError:
    """A value that cannot be represented in its field (table 0357 code 102, data type error)."""
    return InputError(text, [Issue(text, location=location, hl7_error_code=102)])


def msh_segment(
    header: Pcd01Header,
    control_id: str,
    now: datetime,
    *,
    message_type: str = "ORU^R01^ORU_R01",
    profile: tuple[str, str, str, str] = PCD01_PROFILE,
) -> str:
    """MSH as IHE PCD TF-2 Appendix B.1 profiles it: v2.6, AL/NE, UTF-8, MSH-21 the profile."""
    return join_fields(
        "MSH",
        _D.encoding_characters,
        hd(header.sending_application),
        hd(header.sending_facility),
        hd(header.receiving_application),
        hd(header.receiving_facility),
        dtm(now),
        "",
        message_type,
        escape(control_id, _D),
        escape(header.processing_id, _D),
        VERSION,
        "",
        "",
        "AL",
        "NE",
        "",
        "UNICODE UTF-8",
        "",
        "",
        components(*profile),
    )


def pid_segment(patient: PcdPatient) -> str:
    """PID-3 identifiers, PID-5 legal name, PID-7 birth date, PID-8 sex (TF-2 Appendix B.5).

    A patient with no identifiers and no name gives an empty PID (PCD-04 for an
    alert from a device bound to nobody; see :mod:`medhub.hl7.pcd04_builder`).
    """
    identifiers = _D.repetition.join(
        _D.component.join(
            [
                escape(identifier.value, _D),
                "",
                "",
                hd(identifier.authority, _D.subcomponent),
                escape(identifier.type_code, _D),
            ]
        ).rstrip(_D.component)
        for identifier in patient.identifiers
    )
    name = ""
    if patient.family or patient.given or patient.middle:
        name = _D.component.join(
            [escape(patient.family, _D), escape(patient.given, _D), escape(patient.middle, _D)]
            + ["", "", "", "L"]
        )
    birth = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    return join_fields("PID", "", "", identifiers, "", name, "", birth, escape(patient.sex, _D))


def pv1_segment(patient: PcdPatient) -> str:
    """PV1-2 patient class and PV1-3 point of care / room / bed (TF-2 Appendix B.6)."""
    location = components(patient.point_of_care, patient.room, patient.bed)
    return join_fields("PV1", "", escape(patient.patient_class, _D), location)


def nm_text(value: Number, location: Hl7Location) -> str:
    """A number as NM (HL7 v2.6 §2.A.47): plain decimal digits, never an exponent."""
    if isinstance(value, bool):
        raise invalid_value(f"{location.terser()} cannot carry a boolean as a number", location)
    text = decimal_text(value)
    if text is None:
        raise invalid_value(f"{location.terser()} value {value!r} is not a finite number", location)
    return text


def _obx(number: int, observation: DeviceObservation) -> str:
    value_type, value = _value(observation.value, number)
    return join_fields(
        "OBX",
        str(number),
        value_type,
        components(observation.code, observation.text, "MDC"),
        observation.containment.render(),
        value,
        components(observation.unit, "", "UCUM") if observation.unit else "",
        "",
        "",
        "",
        "",
        escape(observation.result_status, _D),
        "",
        "",
        dtm(observation.observed_at),
        "",
        "",
        "",
        components(observation.device_eui64.upper(), "EUI-64"),
    )


def _value(value: Number | str, number: int) -> tuple[str, str]:
    """OBX-2 and OBX-5: NM for numbers, ST for text."""
    if isinstance(value, str):
        return "ST", escape(value, _D)
    return "NM", nm_text(value, Hl7Location("OBX", number, 5))
