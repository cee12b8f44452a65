"""Build IHE PCD-04 ("Report Alert") ORU^R40 messages: one alert change for an Alert Manager.

Pure and clock-free, like :mod:`medhub.hl7.pcd01_builder` (whose data classes
and ER7 helpers it shares): ``now`` and the message control id are parameters,
the result is UTF-8 ER7 bytes with CR segment ends and no MLLP frame. The input
is a plain :class:`AlertReport`, so this module knows nothing of
:mod:`medhub.cds`; :mod:`medhub.wiring_alerts` turns an alert into one.

What IHE PCD Technical Framework Vol. 2 (PCD-04 Report Alert, §3.4, the Alarm
Communication Management profile, ACM) asks of an Alert Reporter, and where it
is done here:

* MSH as in PCD-01, with MSH-9 ``ORU^R40^ORU_R40`` and MSH-21
  ``IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO``. (Some vendors'
  captures carry ``…6.4.4.1`` as the OID; ``…6.4.4`` is the value found in
  the reference messages of Dräger and B. Braun and is used here.)
* PID (Appendix B.5) and PV1 with the point of care (Appendix B.6). An alert
  from a device bound to nobody still has a PID, sent empty: see
  :data:`UNIDENTIFIED_PATIENT`.
* One OBR: OBR-3 the alert's unique identifier (the same in every message
  about one alert, so an Alert Manager correlates start, updates and end by
  it), OBR-4 ``196616^MDC_EVT_ALARM^MDC``, OBR-7 when the alert started,
  OBR-8 when it ended (end phase only), OBR-29 the parent (the alert's
  OBR-3 as the filler-assigned EIP component) on every message after the
  start. Vendors differ here: B. Braun pumps make OBR-3 unique per message
  and point OBR-29 at the first; Philips/Mindray keep OBR-3 and repeat it in
  OBR-29 even on the start.
* The OBX "facets" of the alert (ACM supplement, "Semantics"), told apart by
  OBX-4 ``<MDS>.<VMD>.<CHAN>.<METRIC>.<facet>`` (the DEC dotted notation):

  1. the alert itself: OBX-3 the MDC event (:data:`MDC_EVT_HI`,
     :data:`MDC_EVT_LO`, or the generic :data:`MDC_EVT_ALARM`), OBX-5 the
     alert text, OBX-8 the interpretation: abnormality (table 0078, when a
     limit was crossed), priority (PH/PM/PL/PN) and alert kind (SP
     physiological, ST technical, SA advisory), OBX-14 when this change
     happened, OBX-18 the device;
  2. the source: OBX-3 the vital's MDC term with OBX-5 the current value,
     OBX-6 the UCUM unit and OBX-7 the limit as an HL7 reference range
     (``low-high``, ``>low``, ``<high``: HL7 v2.6 §7.4.2.7); without a value
     (signal lost) ``68480^MDC_ATTR_ALERT_SOURCE^MDC`` naming the vital;
  3. ``68481^MDC_ATTR_EVENT_PHASE^MDC``: start, continue, update or end;
  4. ``68482^MDC_ATTR_ALARM_STATE^MDC``: inactive, active or latched;
  5. ``68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC``: enabled, audio-paused,
     audio-off, alarm-paused, alarm-off or alert-acknowledged;
  6. ``68484^MDC_ATTR_ALARM_PRIORITY^MDC``: PH, PM, PL or PN;
  7. ``68485^MDC_ATTR_ALERT_TYPE^MDC``: SP, ST or SA.

Not sure, and said so rather than guessed (the framework text itself was not
at hand; what is here follows the ACM supplement rev. 1.2-1.3 and vendors'
reference messages):

* The supplement puts priority and kind in OBX-8 of facet 1 and says not to
  repeat them; the vendors' messages send facets 6 and 7 as well, and so does
  this builder, with the same values, so a receiver reading either agrees.
* Whether the framework names an event phase for escalation was not
  confirmed, so an escalation is reported as ``update``.
* Term codes: ``MDC_EVT_LO`` 196670 (a Philips/Mindray capture and a second
  implementation agree), ``MDC_EVT_HI`` 196648 (one implementation; 3::40 in
  IEEE 11073-10101 partition 3), ``MDC_EVT_ALARM`` 196616; the attribute terms
  68480-68485 as in most messages seen (one Dräger draft used 68165-68168).
* How PID-3/PID-5 are meant to be valued for an alert without a patient was
  not confirmed: the empty PID of :data:`UNIDENTIFIED_PATIENT` is a choice.

HL7 v2.6 has no ORU_R40 grammar of its own in hl7apy; the segments above are
in ORU_R01 order (MSH, PID, PV1, OBR, OBX…), which the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from medhub.errors import Hl7Location
from medhub.hl7.er7 import Delimiters, escape
from medhub.hl7.pcd01_builder import (
    EUI64_PATTERN,
    Containment,
    HierarchicDesignator,
    Number,
    Pcd01Header,
    PcdPatient,
    components,
    dtm,
    hd,
    invalid_value,
    join_fields,
    missing_data,
    msh_segment,
    nm_text,
    pid_segment,
    pv1_segment,
)

PCD04_PROFILE: Final = ("IHE_PCD_ACM_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.4.4", "ISO")
MESSAGE_TYPE: Final = "ORU^R40^ORU_R40"
_D: Final = Delimiters()

AlertPhase = Literal["start", "continue", "update", "end"]
AlarmState = Literal["inactive", "active", "latched"]
InactivationState = Literal[
    "enabled", "audio-paused", "audio-off", "alarm-paused", "alarm-off", "alert-acknowledged"
]
#: IEC 60601-1-8 priority as ACM writes it: high, medium, low, none (information).
AlarmPriority = Literal["PH", "PM", "PL", "PN"]
#: Physiological, technical, advisory.
AlertKind = Literal["SP", "ST", "SA"]


@dataclass(frozen=True, slots=True)
class CodedTerm:
    """A CWE: code, text and coding system (``MDC`` for IEEE 11073-10101, ``L`` for local)."""

    code: str
    text: str
    system: str = "MDC"

    def render(self) -> str:
        return components(self.code, self.text, self.system)


MDC_EVT_ALARM: Final = CodedTerm("196616", "MDC_EVT_ALARM")
MDC_EVT_HI: Final = CodedTerm("196648", "MDC_EVT_HI")
MDC_EVT_LO: Final = CodedTerm("196670", "MDC_EVT_LO")
MDC_ATTR_ALERT_SOURCE: Final = CodedTerm("68480", "MDC_ATTR_ALERT_SOURCE")
MDC_ATTR_EVENT_PHASE: Final = CodedTerm("68481", "MDC_ATTR_EVENT_PHASE")
MDC_ATTR_ALARM_STATE: Final = CodedTerm("68482", "MDC_ATTR_ALARM_STATE")
MDC_ATTR_ALARM_INACTIVATION_STATE: Final = CodedTerm("68483", "MDC_ATTR_ALARM_INACTIVATION_STATE")
MDC_ATTR_ALARM_PRIORITY: Final = CodedTerm("68484", "MDC_ATTR_ALARM_PRIORITY")
MDC_ATTR_ALERT_TYPE: Final = CodedTerm("68485", "MDC_ATTR_ALERT_TYPE")

#: The patient of an alert from a device bound to nobody. PCD-04 requires the
#: PID segment but a device is not a patient, and a made-up identifier would
#: let an Alert Manager file every such alert under one "unknown" person; so
#: PID is sent empty (PID-3 and PID-5 have no value), PV1-2 is ``U`` (table
#: 0004, unknown), and the device in OBX-18 is the alert's only context.
UNIDENTIFIED_PATIENT: Final = PcdPatient(identifiers=(), family="", patient_class="U")

_ABNORMAL: Final = frozenset({"", "L", "H", "LL", "HH", "<", ">", "A", "AA"})


@dataclass(frozen=True, slots=True)
class AlertReport:
    """One change of one alert, everything a PCD-04 carries about it.

    ``alert_id`` is the alert's unique identifier (OBR-3). ``value`` None
    means there is no current value (signal lost). ``limit_low`` /
    ``limit_high`` are the limits the value is judged against, in ``unit``
    (leave both None when the limit is not in the value's unit, e.g. a rate
    of change). ``device_eui64`` (16 hex digits) is sent in OBX-18 when known,
    else ``device_id`` under the sending application's namespace.
    """

    alert_id: str
    phase: AlertPhase
    state: AlarmState
    inactivation: InactivationState
    priority: AlarmPriority
    kind: AlertKind
    event: CodedTerm
    text: str
    source: CodedTerm
    value: Number | None
    unit: str
    started_at: datetime
    changed_at: datetime
    device_id: str
    patient: PcdPatient = UNIDENTIFIED_PATIENT
    abnormality: str = ""
    limit_low: Number | None = None
    limit_high: Number | None = None
    ended_at: datetime | None = None
    device_eui64: str | None = None
    containment: Containment = Containment(1, 0, 0, 0)


def build_pcd04_oru(
    report: AlertReport, *, header: Pcd01Header, control_id: str, now: datetime
) -> bytes:
    """The PCD-04 ORU^R40 for one alert change (UTF-8 ER7, CR segment ends).

    Raises :class:`~medhub.errors.MissingDataError` when a required element is
    absent and :class:`~medhub.errors.InputError` when a value cannot be
    represented (a naive time, an EUI-64 that is not 16 hex digits, a number
    that is not finite, an abnormal flag not in table 0078).
    """
    _check(report, control_id)
    segments = [
        msh_segment(header, control_id, now, message_type=MESSAGE_TYPE, profile=PCD04_PROFILE),
        pid_segment(report.patient),
        pv1_segment(report.patient),
        _obr(report, header.sending_application),
        *_facets(report, header.sending_application),
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def _check(report: AlertReport, control_id: str) -> None:
    if not control_id:
        raise missing_data("MSH-10 (message control id) is required", "MSH", 10)
    if not report.alert_id:
        raise missing_data("OBR-3 needs the alert's identifier", "OBR", 3)
    if any(not identifier.value for identifier in report.patient.identifiers):
        raise missing_data("every PID-3 repetition needs an identifier value", "PID", 3)
    if not report.device_id and report.device_eui64 is None:
        raise missing_data("OBX-18 needs the device's id or EUI-64", "OBX", 18)
    if not report.event.code or not report.source.code:
        raise missing_data("OBX-3 needs the event and the source codes", "OBX", 3)
    if report.device_eui64 is not None and not EUI64_PATTERN.match(report.device_eui64):
        raise invalid_value(
            f"OBX-18 device EUI-64 {report.device_eui64!r} is not 16 hex digits",
            Hl7Location("OBX", 1, 18),
        )
    if report.abnormality not in _ABNORMAL:
        raise invalid_value(
            f"OBX-8 abnormal flag {report.abnormality!r} is not one of table 0078's",
            Hl7Location("OBX", 1, 8),
        )
    times = [("OBR", 7, report.started_at), ("OBX", 14, report.changed_at)]
    if report.ended_at is not None:
        times.append(("OBR", 8, report.ended_at))
    for segment, field, moment in times:
        if moment.tzinfo is None:
            location = Hl7Location(segment, 1, field)
            raise invalid_value(f"{location.terser()} needs a time zone", location)
    parts = report.containment
    if min(parts.mds, parts.vmd, parts.channel, parts.metric) < 0:
        raise invalid_value(
            f"OBX-4 containment {parts.render()} has a negative part", Hl7Location("OBX", 1, 4)
        )


def _alert_identifier(report: AlertReport, sender: HierarchicDesignator, separator: str) -> str:
    """EI: the alert id under the sending application (namespace, universal id, its type)."""
    parts = [escape(report.alert_id, _D), hd(sender, separator)]
    return separator.join(part for part in parts if part)


def _obr(report: AlertReport, sender: HierarchicDesignator) -> str:
    parent = ""
    if report.phase != "start":
        # EIP-2, the parent's filler-assigned identifier, an EI in sub-components.
        parent = _D.component + _alert_identifier(report, sender, _D.subcomponent)
    ended = dtm(report.ended_at) if report.phase == "end" and report.ended_at else ""
    return join_fields(
        "OBR",
        "1",
        "",
        _alert_identifier(report, sender, _D.component),
        MDC_EVT_ALARM.render(),
        "",
        "",
        dtm(report.started_at),
        ended,
        *([""] * 20),  # OBR-9 .. OBR-28
        parent,
    )


def _reference_range(report: AlertReport) -> str:
    """OBX-7 (HL7 v2.6 §7.4.2.7): ``low-high``, ``>low`` (no upper) or ``<high`` (no lower)."""
    where = Hl7Location("OBX", 2, 7)
    low, high = report.limit_low, report.limit_high
    if low is not None and high is not None:
        return f"{nm_text(low, where)}-{nm_text(high, where)}"
    if low is not None:
        return ">" + nm_text(low, where)
    if high is not None:
        return "<" + nm_text(high, where)
    return ""


def _equipment(report: AlertReport, sender: HierarchicDesignator) -> str:
    """OBX-18 EI: ``<EUI-64>^EUI-64`` as PCD-01 sends it, else the device id under our namespace."""
    if report.device_eui64 is not None:
        return components(report.device_eui64.upper(), "EUI-64")
    return components(
        report.device_id, sender.namespace, sender.universal_id, sender.universal_id_type
    )


def _obx(
    number: int,
    value_type: str,
    identifier: CodedTerm,
    sub_id: str,
    value: str,
    *,
    units: str = "",
    reference_range: str = "",
    interpretation: str = "",
    observed: str = "",
    equipment: str = "",
) -> str:
    return join_fields(
        "OBX",
        str(number),
        value_type,
        identifier.render(),
        sub_id,
        value,
        units,
        reference_range,
        interpretation,
        "",
        "",
        "F",
        "",
        "",
        observed,
        "",
        "",
        "",
        equipment,
    )


def _facets(report: AlertReport, sender: HierarchicDesignator) -> list[str]:
    base = report.containment.render()
    changed = dtm(report.changed_at)
    equipment = _equipment(report, sender)
    flags = [report.abnormality] if report.abnormality else []
    interpretation = _D.repetition.join([*flags, report.priority, report.kind])
    rows = [
        _obx(
            1,
            "ST",
            report.event,
            f"{base}.1",
            escape(report.text, _D),
            interpretation=interpretation,
            observed=changed,
            equipment=equipment,
        )
    ]
    if report.value is None:
        rows.append(
            _obx(2, "CWE", MDC_ATTR_ALERT_SOURCE, f"{base}.2", report.source.render(),
                 observed=changed, equipment=equipment)
        )  # fmt: skip
    else:
        rows.append(
            _obx(
                2,
                "NM",
                report.source,
                f"{base}.2",
                nm_text(report.value, Hl7Location("OBX", 2, 5)),
                units=components(report.unit, "", "UCUM") if report.unit else "",
                reference_range=_reference_range(report),
                observed=changed,
                equipment=equipment,
            )
        )
    attributes: tuple[tuple[CodedTerm, str], ...] = (
        (MDC_ATTR_EVENT_PHASE, report.phase),
        (MDC_ATTR_ALARM_STATE, report.state),
        (MDC_ATTR_ALARM_INACTIVATION_STATE, report.inactivation),
        (MDC_ATTR_ALARM_PRIORITY, report.priority),
        (MDC_ATTR_ALERT_TYPE, report.kind),
    )
    for facet, (term, value) in enumerate(attributes, start=3):
        rows.append(_obx(facet, "ST", term, f"{base}.{facet}", value))
    return rows
