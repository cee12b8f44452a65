"""Live updates for the dashboards: a hub that fans events out to WebSocket clients.

The sources run on other threads: device ingest calls :meth:`LiveHub.vitals`
with every stored batch (MQTT, Modbus and serial threads), the alert service
calls :meth:`LiveHub.alerts` after each commit (API worker threads, the
watch's timer), the in-process event bus calls :meth:`LiveHub.outbox_event`
on the relay thread. None of them may wait for a slow browser, so the hub only
hands each event to the event loop (``loop.call_soon_threadsafe``); on the
loop it is copied into every client's bounded queue, and each client's sender
(:mod:`medhub.api.ui_socket`) decides for its own principal whether the event
is one it may see. When nobody is connected the sources return at once.

Events (``type``):

* ``vitals.update``: the newest value of each vital of one patient,
  throttled to one update per patient per ``vitals_interval`` (1 s). A monitor
  sends several samples a second and a tile redrawn faster than it can be read
  helps nobody; the throttle keeps the newest value of each vital and sends it
  when the interval ends, so the last value always arrives.
* ``alert.raised`` / ``alert.acknowledged`` / ``alert.escalated`` /
  ``alert.resolved``: the alert as ``/api/v1/alerts`` shows it, sent only
  after its transaction committed.
* ``notification.new``: a new prescription (to pharmacists and physicians) or
  a critical lab result (to nurses and physicians), from the outbox events.
* ``feed.state``: ``live`` false when this server lost the broker feed that
  brings other processes' vitals and alerts (split roles), true when it is
  back; to every client, so no page shows stale tiles as if they were live.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, Protocol

import structlog
from fastapi import FastAPI

from medhub.api.deps import ApiContext
from medhub.api.permissions import Role
from medhub.cds.alert_store import AlertService, alert_payload
from medhub.cds.alerts import Alert
from medhub.timeseries.records import SampleRecord, newest_by_patient

log = structlog.get_logger(__name__)

#: What a client's queue holds before it counts as too slow and is disconnected.
QUEUE_SIZE: Final = 1000


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as the JSON API writes times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event for the dashboards and who may receive it.

    ``area`` is the permission a receiver needs (``Principal.can(area, "read")``);
    ``audience`` limits it further to some roles; ``patient`` (an id) is checked
    against the receiver's care units. An event about no patient goes only to
    receivers who are not limited to units.
    """

    type: str
    patient: str | None
    area: str
    data: Mapping[str, Any]
    audience: frozenset[Role] | None = None
    #: About the feed itself, no patient data: every connected client gets it.
    broadcast: bool = False

    def message(self) -> dict[str, Any]:
        return {"type": self.type, "patient": self.patient, **self.data}


class Reading(NamedTuple):
    value: float
    unit: str
    time: datetime
    device: str


@dataclass(eq=False)
class Subscription:
    """One connected client: its queue, and whether it fell too far behind."""

    queue: asyncio.Queue[LiveEvent] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )
    overflowed: bool = False


class OutboxMessageLike(Protocol):
    """What the in-process bus hands its subscribers (``adapters.event_bus.OutboxMessage``)."""

    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...

    def body(self) -> dict[str, Any]: ...


class ReadingLike(Protocol):
    """A reading from another process (``adapters.live_broker.LiveReading``)."""

    @property
    def value(self) -> float: ...
    @property
    def unit(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def device(self) -> str: ...


class IngestLike(Protocol):
    def add_listener(self, listener: Callable[[Sequence[SampleRecord]], None]) -> None: ...


class BusLike(Protocol):
    def subscribe(self, binding: str, callback: Callable[[Any], None]) -> None: ...


def _patient_id(reference: object) -> str | None:
    if not isinstance(reference, str) or not reference:
        return None
    return reference.removeprefix("Patient/")


def _prescription_text(body: Mapping[str, Any]) -> str:
    text = f"New prescription: {body.get('medication') or 'a medication'}"
    issues = body.get("detectedIssues") or []
    if issues:
        text += f" ({len(issues)} finding{'s' if len(issues) != 1 else ''})"
    if body.get("overridden"):
        text += f"; override: {body.get('overrideReason') or 'no reason given'}"
    return text


def _critical_lab_text(body: Mapping[str, Any]) -> str:
    code = body.get("code") or {}
    name = code.get("display") or code.get("code") or "a result"
    value = " ".join(str(v) for v in (body.get("value"), body.get("unit")) if v is not None)
    return f"Critical lab result: {name} {value} ({body.get('flag', '')})".replace(" ()", "")


#: Outbox topics shown as notifications: permission area, roles, text, and the patient field.
NOTIFICATIONS: Final[
    dict[str, tuple[str, frozenset[Role], Callable[[Mapping[str, Any]], str], str]]
] = {
    "prescription.created": (
        "MedicationRequest",
        frozenset({"pharmacist", "physician"}),
        _prescription_text,
        "patient",
    ),
    "lab.result.critical": (
        "Observation",
        frozenset({"nurse", "physician"}),
        _critical_lab_text,
        "patient_id",
    ),
}


class LiveHub:
    """Fans dashboard events out to the connected clients; publishable from any thread."""

    def __init__(self, *, vitals_interval: float = 1.0) -> None:
        self.vitals_interval = vitals_interval
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: set[Subscription] = set()
        # The throttle; touched only on the loop.
        self._pending: dict[str, dict[str, Reading]] = {}
        self._last_sent: dict[str, float] = {}
        self._scheduled: set[str] = set()
        #: False while the broker feed of a split deployment is down (``feed.state``).
        self.feed_live = True

    # -- clients (on the event loop) ---------------------------------------------------

    def subscribe(self) -> Subscription:
        """A new client; binds the hub to the running loop (the server's)."""
        subscription = Subscription()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)

    @property
    def listening(self) -> bool:
        """Whether any client is connected (sources skip their work when not)."""
        with self._lock:
            return bool(self._subscriptions)

    # -- sources (any thread) -----------------------------------------------------------

    def publish(self, event: LiveEvent) -> None:
        """Send ``event`` to every client that may see it."""
        self._hand_over(self._dispatch, event)

    def vitals(self, records: Sequence[SampleRecord]) -> None:
        """The device-ingest listener: the newest reading per patient and vital of a batch."""
        if not self.listening:
            return
        latest = {
            patient: {
                vital: Reading(r.value, r.unit, r.corrected_time, r.device_id)
                for vital, r in vitals.items()
            }
            for patient, vitals in newest_by_patient(records).items()
        }
        if latest:
            self._hand_over(self._merge_vitals, latest)

    def readings(self, latest: Mapping[str, Mapping[str, ReadingLike]]) -> None:
        """Newest readings another process ingested (:mod:`medhub.adapters.live_broker`)."""
        if not self.listening:
            return
        converted = {
            patient: {v: Reading(r.value, r.unit, r.time, r.device) for v, r in vitals.items()}
            for patient, vitals in latest.items()
        }
        if converted:
            self._hand_over(self._merge_vitals, converted)

    def feed_state(self, live: bool) -> None:
        """The broker feed connected (True) or was lost (False): tell every page."""
        if live == self.feed_live:
            return
        self.feed_live = live
        text = "live" if live else "server lost its live feed: vitals and alerts may be stale"
        self.publish(
            LiveEvent("feed.state", None, "Observation", {"live": live, "text": text}, None, True)
        )

    def alerts(self, changed: Sequence[Alert]) -> None:
        """The alert service's change listener (after commit)."""
        for alert in changed:
            self.alert_changed(f"alert.{alert.state}", alert_payload(alert))

    def alert_changed(self, topic: str, payload: Mapping[str, Any]) -> None:
        """One alert change (``alert.raised`` …) as ``/api/v1/alerts`` shows the alert."""
        patient = _patient_id(payload.get("patient"))
        self.publish(LiveEvent(topic, patient, "alerts", {"alert": dict(payload)}))

    def outbox_event(self, message: OutboxMessageLike) -> None:
        """An in-process bus subscriber: outbox events that become notifications."""
        spec = NOTIFICATIONS.get(message.topic)
        if spec is None:
            return
        area, audience, describe, patient_field = spec
        try:
            body = message.body()
            notification = {
                "id": message.id,
                "topic": message.topic,
                "text": describe(body),
                "at": iso(message.created_at),
            }
            patient = _patient_id(body.get(patient_field))
        except Exception:  # a malformed event must not make the relay redeliver to everyone
            log.exception("live.notification_unreadable", topic=message.topic)
            return
        self.publish(
            LiveEvent("notification.new", patient, area, {"notification": notification}, audience)
        )

    # -- on the loop ----------------------------------------------------------------

    def _hand_over(self, callback: Callable[[Any], None], argument: Any) -> None:
        with self._lock:
            loop = self._loop if self._subscriptions else None
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, argument)
        except RuntimeError:  # the loop closed (shutting down): nobody is left to tell
            pass

    def _dispatch(self, event: LiveEvent) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            if subscription.overflowed:
                continue
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client this far behind shows stale vitals: it is disconnected and
                # reloads, rather than the hub holding an unbounded backlog for it.
                subscription.overflowed = True
                log.warning("live.client_too_slow", queued=subscription.queue.qsize())

    def _merge_vitals(self, latest: dict[str, dict[str, Reading]]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for patient, readings in latest.items():
            pending = self._pending.setdefault(patient, {})
            for vital, reading in readings.items():
                known = pending.get(vital)
                if known is None or known.time <= reading.time:
                    pending[vital] = reading
            if patient in self._scheduled:
                continue
            delay = self._last_sent.get(patient, float("-inf")) + self.vitals_interval - now
            if delay <= 0:
                self._flush_vitals(patient)
            else:
                self._scheduled.add(patient)
                loop.call_later(delay, self._flush_vitals, patient)

    def _flush_vitals(self, patient: str) -> None:
        self._scheduled.discard(patient)
        readings = self._pending.pop(patient, None)
        if not readings:
            return
        self._last_sent[patient] = asyncio.get_running_loop().time()
        vitals = {
            vital: {"value": r.value, "unit": r.unit, "time": iso(r.time), "device": r.device}
            for vital, r in readings.items()
        }
        self._dispatch(LiveEvent("vitals.update", patient, "Observation", {"vitals": vitals}))


def connect_live(
    hub: LiveHub,
    *,
    ingest: IngestLike | None = None,
    alerts: AlertService | None = None,
    bus: BusLike | None = None,
) -> None:
    """Feed the hub: vitals from device ingest, alert changes, and outbox notifications.

    ``bus`` is the in-process event bus (the embedded default); with RabbitMQ
    configured there is none and notifications are not live (alerts and
    vitals still are: they come from ingest and the alert service directly).
    """
    if ingest is not None:
        ingest.add_listener(hub.vitals)
    if alerts is not None:
        alerts.change_listeners.append(hub.alerts)
    if bus is not None:
        for topic in NOTIFICATIONS:
            bus.subscribe(topic, hub.outbox_event)


def install_live(app: FastAPI, context: ApiContext) -> LiveHub:
    """Give the app its hub (``app.state.live``), served at ``/ws`` by :mod:`medhub.api.ui_socket`.

    The composition root builds the hub, connects ingest, alerts and the bus
    to it and hands it over as ``ApiContext.live``; an app built by
    hand in a test gets a hub of its own, fed by the context's alert service.
    """
    hub = context.live
    if not isinstance(hub, LiveHub):
        hub = LiveHub()
        connect_live(hub, alerts=context.alerts)
    app.state.live = hub
    return hub


def hub_of(app: Any) -> LiveHub | None:
    hub = getattr(app.state, "live", None)
    return hub if isinstance(hub, LiveHub) else None
