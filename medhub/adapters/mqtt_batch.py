"""Decoding a batch of MQTT messages: route by topic, keep the good, account for the bad.

The consumer (:mod:`medhub.adapters.mqtt_ingest`) takes messages off the wire
in batches; this module turns one batch into what the sink and the handlers
need (all samples of the batch, statuses, alerts) and does the bookkeeping for
what was refused. No network and no storage here: decoding is the pure
:mod:`medhub.devices.mqtt_payload`, and this adds only the topic routing and
the rejection policy:

* a message that cannot be used at all (bad topic, not JSON, wrong shape) is
  refused whole; a message with some bad entries keeps its good ones;
* every refusal is counted per device (bounded: device ids come off the wire),
  kept in a ring for inspection with the first KiB of its payload, and logged
  with its reason and topic, at most once per device every ten seconds so one
  broken gateway cannot flood the log;
* an unexpected exception inside a decoder refuses that one message and is
  logged with its traceback: it never stops the consumer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Final, NamedTuple

import structlog

from medhub.devices.mqtt_payload import (
    DeviceAlert,
    DeviceStatus,
    decode_alerts,
    decode_status,
    decode_vitals,
    parse_topic,
)
from medhub.devices.samples import Sample
from medhub.errors import MedhubError
from medhub.metrics import count_rejected

log = structlog.get_logger("medhub.adapters.mqtt")

#: At most one rejection log line per device in this many seconds (the rest are counted).
_LOG_EVERY_SECONDS: Final = 10.0
_PAYLOAD_KEPT: Final = 1024
_MAX_DEVICES_TRACKED: Final = 10_000


class Inbound(NamedTuple):
    """One received message; ``generation`` names the connection it came on."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    arrived: float
    generation: int


@dataclass
class Decoded:
    """What a batch holds: samples for one store call, statuses, alerts, refusals per device."""

    samples: list[Sample] = field(default_factory=list)
    statuses: list[DeviceStatus] = field(default_factory=list)
    alerts: list[DeviceAlert] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)


def merge(parts: Sequence[Decoded]) -> Decoded:
    """Several decoded batches as one, in their order, for a single store call.

    Generic over the fields (lists are concatenated, per-device counts added),
    so a field added to :class:`Decoded` cannot be dropped here by oversight.
    """
    if len(parts) == 1:
        return parts[0]
    merged = Decoded()
    for part in parts:
        for item in fields(merged):
            into, more = getattr(merged, item.name), getattr(part, item.name)
            if isinstance(into, list):
                into.extend(more)
            elif isinstance(into, dict):
                for key, count in more.items():
                    into[key] = into.get(key, 0) + count
            else:  # a new kind of field needs its own rule here
                raise TypeError(f"Decoded.{item.name}: no merge rule for {type(into).__name__}")
    return merged


@dataclass(frozen=True, slots=True)
class Rejection:
    """A payload refused (or partly refused), kept for inspection."""

    topic: str
    device_id: str | None
    reason: str
    payload: bytes
    at: datetime


@dataclass
class RejectionStats:
    """Refusals since start (written by the decoding thread only)."""

    messages_rejected: int = 0
    samples_rejected: int = 0
    rejected_by_device: dict[str, int] = field(default_factory=dict)


class BatchDecoder:
    """Decodes batches for one consumer and keeps its rejection accounts."""

    def __init__(
        self,
        *,
        topic_prefix: str,
        stats: RejectionStats,
        kept: int = 100,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.topic_prefix = topic_prefix
        self.stats = stats
        #: Which devices this consumer takes (a partition); the others' messages are skipped.
        self.owns = owns
        #: Messages skipped as another partition's (acked with their batch, never decoded).
        self.skipped = 0
        self.recent: deque[Rejection] = deque(maxlen=kept)
        self._log_due: dict[str, tuple[float, int]] = {}

    def decode(self, batch: Sequence[Inbound]) -> Decoded:
        decoded = Decoded()
        for item in batch:
            device_id: str | None = None
            try:
                device_id = parse_topic(item.topic, prefix=self.topic_prefix).device_id
                if self.owns is not None and not self.owns(device_id):
                    self.skipped += 1
                    continue
                self._decode_one(item, device_id, decoded)
            except MedhubError as exc:
                code = exc.issues[0].code if exc.issues else exc.fhir_issue_code
                self._reject(item, device_id, exc.message, 1, decoded, whole=True, code=code)
            except Exception as exc:  # a decoder bug: this message only, never the consumer
                log.exception("mqtt.decoder_error", topic=item.topic[:200])
                reason = f"decoder error: {exc!r}"
                self._reject(item, device_id, reason, 1, decoded, whole=True, code="parser-error")
        return decoded

    def _decode_one(self, item: Inbound, device_id: str, decoded: Decoded) -> None:
        kind = item.topic.rsplit("/", 1)[1]
        if kind == "vitals":
            vitals = decode_vitals(device_id, item.payload)
            decoded.samples.extend(vitals.samples)
            issues, taken, what = vitals.rejected, len(vitals.samples), "sample"
        elif kind == "status":
            decoded.statuses.append(decode_status(device_id, item.payload))
            return
        else:
            alerts = decode_alerts(device_id, item.payload)
            decoded.alerts.extend(alerts.alerts)
            issues, taken, what = alerts.rejected, len(alerts.alerts), "alert"
        if issues:
            first = issues[0]
            where = ",".join(first.expression)
            reason = f"{len(issues)} {what}(s) refused; {where}: {first.message}"
            # nothing of the message was usable: it counts as a rejected message
            count, whole = len(issues), not taken
            self._reject(item, device_id, reason, count, decoded, whole=whole, code=first.code)

    def _reject(
        self,
        item: Inbound,
        device_id: str | None,
        reason: str,
        count: int,
        decoded: Decoded,
        *,
        whole: bool = False,
        code: str = "invalid",
    ) -> None:
        """``code``: the FHIR issue type, the ``reason`` of ``medhub_samples_rejected_total``."""
        count_rejected("mqtt", code, count)
        stats = self.stats
        stats.messages_rejected += whole
        stats.samples_rejected += count
        key = device_id or "(bad topic)"
        by_device = stats.rejected_by_device
        if key not in by_device and len(by_device) >= _MAX_DEVICES_TRACKED:
            key = "(other devices)"  # device ids come from the wire: bound what they cost
        by_device[key] = by_device.get(key, 0) + count
        if device_id is not None:
            decoded.rejected[device_id] = decoded.rejected.get(device_id, 0) + count
        at = datetime.fromtimestamp(item.arrived, UTC)
        self.recent.append(
            Rejection(item.topic[:200], device_id, reason, item.payload[:_PAYLOAD_KEPT], at)
        )
        self._log(key, item.topic, device_id, reason, whole)

    def _log(self, key: str, topic: str, device_id: str | None, reason: str, whole: bool) -> None:
        now = time.monotonic()
        if len(self._log_due) >= _MAX_DEVICES_TRACKED:
            self._log_due.clear()
        due, suppressed = self._log_due.get(key, (0.0, 0))
        if now < due:
            self._log_due[key] = (due, suppressed + 1)
            return
        self._log_due[key] = (now + _LOG_EVERY_SECONDS, 0)
        log.warning(
            "mqtt.payload_rejected",
            topic=topic[:200],
            device=device_id,
            reason=reason[:500],
            whole_message=whole,
            suppressed_since_last=suppressed,
        )
