"""What the MQTT consumer does with device status and alerts, and where refusals are counted.

Handlers are plain callables so the composition root decides where each
stream goes; these are the ones medhub wires by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog

from medhub.devices.mqtt_payload import DeviceAlert, DeviceStatus

log = structlog.get_logger("medhub.adapters.mqtt")


class RejectionCounter(Protocol):
    """Where per-device rejection counts go (:meth:`DeviceIngest.note_rejected`)."""

    def note_rejected(self, device_id: str, count: int) -> None: ...


class StateRecorder(Protocol):
    """What the status handler needs of the device registry."""

    def record_state(
        self,
        device_id: str,
        *,
        status: str | None = None,
        status_at: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None: ...


StatusHandler = Callable[[DeviceStatus], None]
AlertsHandler = Callable[[Sequence[DeviceAlert]], None]


def registry_status_handler(registry: StateRecorder) -> StatusHandler:
    """Status messages -> the device's state row (shown by the devices API)."""

    def record(status: DeviceStatus) -> None:
        detail: dict[str, Any] = {}
        if status.battery_percent is not None:
            detail["battery_percent"] = status.battery_percent
        if status.text:
            detail["text"] = status.text
        registry.record_state(
            status.device_id,
            status=status.state,
            status_at=status.device_time,
            detail=detail or None,
        )

    return record


def log_alerts(alerts: Sequence[DeviceAlert]) -> None:
    """Device alarms logged only: the handler when they are not turned into alerts.

    ``medhub serve`` wires :class:`medhub.wiring_device_alarms.DeviceAlarmHandler`
    instead (``MEDHUB_ALERTS__DEVICE_ALARMS``, on by default).
    """
    for alert in alerts:
        log.info(
            "mqtt.device_alert",
            device=alert.device_id,
            code=alert.code,
            priority=alert.priority,
            phase=alert.phase,
            alarm=alert.identity,
            vital=alert.vital,
            text=alert.text[:200],
        )
