"""What an alert looks like outside the ``alert`` table: its event, its Flag, its Observation.

* The JSON payload (:func:`alert_payload`) is the same on RabbitMQ, the
  in-process bus and the alerts API, so a dashboard and a consumer see one shape.
* The Flag (FHIR R4 flag.html) is ``active`` while the alert is open and
  ``inactive`` with ``period.end`` once resolved; its code is medhub's
  condition code system. A Flag's subject cannot be a Device, so an alert of a
  device bound to nobody has none.
* The Observation (FHIR R4 observation-vitalsigns) is the triggering value,
  with its LOINC code, UCUM quantity and v3 interpretation (L, H, LL, HH).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from medhub.cds.alarm_codes import Condition
from medhub.cds.alert_rows import finite as _finite
from medhub.cds.alerts import Alert
from medhub.clinical.vital_codes import UCUM_SYSTEM, device_vital, vital_signs_category
from medhub.db.outbox import DomainEvent
from medhub.fhir.store import format_instant

#: Code system of the alert conditions in ``Flag.code`` (medhub's own, lower-case names).
CONDITION_SYSTEM: Final = "urn:medhub:alert-condition"
FLAG_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/flag-category"
INTERPRETATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#: The v3 ObservationInterpretation code of each limit condition (rate and signal lost have none).
_INTERPRETATION: Final[dict[Condition, str]] = {
    Condition.LOW: "L",
    Condition.HIGH: "H",
    Condition.CRITICAL_LOW: "LL",
    Condition.CRITICAL_HIGH: "HH",
}


def _instant(moment: datetime | None) -> str | None:
    return None if moment is None else format_instant(moment)


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body published for an alert change (the same for RabbitMQ and the bus)."""
    return {
        "alert_id": alert.id,
        "state": alert.state,
        "patient": alert.patient_id,
        "device": alert.device_id,
        "channel": alert.channel,
        "vital": alert.vital,
        "condition": alert.condition.name.lower(),
        "severity": alert.severity,
        "value": _finite(alert.value),
        "limit": _finite(alert.limit),
        "unit": alert.unit,
        "raised_at": _instant(alert.raised_at),
        "acknowledged_at": _instant(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "escalated_at": _instant(alert.escalated_at),
        "resolved_at": _instant(alert.resolved_at),
        "resolved_value": _finite(alert.resolved_value),
        "flag": None if alert.flag_id is None else f"Flag/{alert.flag_id}",
        "observation": None
        if alert.observation_id is None
        else f"Observation/{alert.observation_id}",
        "source_alarm": alert.source_alarm,
        "alarm_code": alert.alarm_code,
        "event_code": alert.event_code,
        "text": alert.text,
    }


def alert_event(alert: Alert) -> DomainEvent:
    """Topic ``alert.<state>``; routing key ``alerts.<severity>.<vital>.<unit>``."""
    return DomainEvent(
        topic=f"alert.{alert.state}", routing_key=alert.routing_key, payload=alert_payload(alert)
    )


def describe(alert: Alert) -> str:
    """One line for a clinician: the source's own text when it has one (NEWS2, a device)."""
    if alert.text:
        return alert.text
    what = alert.condition.name.lower().replace("_", " ")
    if alert.condition is Condition.SIGNAL_LOST:
        return f"{alert.vital}: signal lost"
    return f"{alert.vital} {what}: {alert.value:g} {alert.unit} (limit {alert.limit:g})"


def observation_resource(alert: Alert) -> dict[str, Any]:
    """The triggering value as a vital-signs Observation (LOINC code, UCUM quantity)."""
    vital = device_vital(alert.vital)
    code: dict[str, Any] = {"text": alert.vital}
    if vital is not None and vital.loinc:
        code["coding"] = vital.loinc_codings()
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [vital_signs_category()],
        "code": code,
        "effectiveDateTime": format_instant(alert.raised_at),
        "device": {"display": alert.device_id},
    }
    if alert.patient_id is not None:
        resource["subject"] = {"reference": f"Patient/{alert.patient_id}"}
    value = _finite(alert.value)
    if value is None:
        resource["dataAbsentReason"] = {"text": "signal lost"}
    else:
        resource["valueQuantity"] = {
            "value": value,
            "unit": alert.unit,
            "system": UCUM_SYSTEM,
            "code": alert.unit,
        }
    interpretation = _INTERPRETATION.get(alert.condition)
    if interpretation is not None:
        resource["interpretation"] = [
            {"coding": [{"system": INTERPRETATION_SYSTEM, "code": interpretation}]}
        ]
    return resource


def flag_resource(alert: Alert) -> dict[str, Any]:
    """The alert as a Flag on the patient: active while open, inactive once resolved."""
    period = {"start": format_instant(alert.raised_at)}
    if alert.resolved_at is not None:
        period["end"] = format_instant(alert.resolved_at)
    return {
        "resourceType": "Flag",
        "status": "inactive" if alert.state == "resolved" else "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": "clinical"}]}],
        "code": {
            "coding": [{"system": CONDITION_SYSTEM, "code": alert.condition.name.lower()}],
            "text": describe(alert),
        },
        "subject": {"reference": f"Patient/{alert.patient_id}"},
        "period": period,
    }
