"""Prometheus metrics: the numbers that tell operations whether medhub keeps its promises.

Two kinds, because they are produced in two different ways:

* **Event metrics** (counters and histograms) are incremented where the thing
  happens: a message ACKed, a batch of samples stored, an alert changing state,
  a FHIR request answered. They live in this module, on prometheus_client's
  default registry, and are process-wide: one process is one scrape target.
  Instrumented code binds its labelled children once (``counter.labels(...)``
  costs a lock and a validation) and increments per batch, not per sample.
* **Scrape-time gauges** (queue and outbox depths, open alerts, database pool
  use) are read when Prometheus asks: a depth kept up to date on every enqueue
  and dequeue would cost every transaction something and drift after a
  restart, while one ``GROUP BY`` per scrape is exact. They are
  :class:`ScrapeSource` callables handed in by the composition root
  (:mod:`medhub.wiring_metrics`) and rendered by a :class:`ScrapeCollector`
  per app, never registered globally: tests build many apps in one process,
  and a registry refuses a second collector with the same names.

A source that fails (the database is down) is left out of that scrape and
counted in ``medhub_metrics_collect_errors_total``; ``/metrics`` itself never
fails, since the scrape that matters most is the one during an outage.

Labels never carry patient or device identifiers, peers or control ids: only
values from small sets fixed by medhub or by its configuration (directions,
statuses, destination names, severities, FHIR interactions, HTTP statuses).
A label value from the wire goes through :func:`bounded`. That keeps PHI out
of the monitoring system and the number of series bounded (Prometheus
naming and label practice: prometheus.io/docs/practices/naming).

This module imports nothing from medhub's layers, so any layer may import it
(like :mod:`medhub.errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

#: The Prometheus text exposition format 0.0.4, which every scraper understands.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

# A ``_created`` series per counter and histogram child would double the exposition
# for a timestamp Prometheus does not use; medhub owns its process, so switch them off.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: ACK latency buckets: an AA promises a commit (an fsync, ~1 ms), and partners
#: time out after tens of seconds.
ACK_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: Detector batch durations: the numba kernel runs hundreds of millions of samples a second,
#: so a batch takes microseconds unless something is wrong.
DETECTOR_BUCKETS: Final = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
)

HL7_MESSAGES: Final = Counter(
    "medhub_hl7_messages",
    "HL7 v2 messages by direction and outcome. in: the inbound status as logged (accepted, "
    "stored, duplicate, dead-letter, rejected), interface 'mllp'; out: an exchange with a "
    "destination (sent, retry, parked), interface the destination's name. A rising rejected "
    "or parked rate means a partner and medhub disagree about the messages.",
    ["direction", "interface", "status"],
)
HL7_ACK_SECONDS: Final = Histogram(
    "medhub_hl7_ack_seconds",
    "in: from a frame's last byte read to its ACK written (the store commit is inside); "
    "out: from a message written to its ACK read. Partners resend after their own timeout, "
    "so a slow tail here turns into duplicates.",
    ["direction", "interface"],
    buckets=ACK_BUCKETS,
)
SAMPLES_INGESTED: Final = Counter(
    "medhub_samples_ingested",
    "Device samples handed to ingest and stored (or spooled) by transport (mqtt, modbus, "
    "serial). A source that stops moving is a device or gateway that went quiet.",
    ["source"],
)
SAMPLES_REJECTED: Final = Counter(
    "medhub_samples_rejected",
    "Device data refused, by transport and reason: a FHIR issue-type code from the decoder "
    "(invalid, structure, required, value, ...), parser-error (a decoder bug), store-refused "
    "(the store refused a batch for good) or overflow (dropped: the pending buffer was full). "
    "A whole unusable message counts once.",
    ["source", "reason"],
)
DETECTOR_SAMPLES: Final = Counter(
    "medhub_detector_samples",
    "Samples run through the vital-sign detector: with medhub_samples_ingested_total, shows "
    "whether every watched vital reaches the detector.",
)
DETECTOR_SECONDS: Final = Histogram(
    "medhub_detector_seconds",
    "Time the vital-sign detector took per ingest batch (detection only, not alert storage); "
    "it sits between a sample being stored and its alert being raised.",
    buckets=DETECTOR_BUCKETS,
)
ALERTS: Final = Counter(
    "medhub_alerts",
    "Committed alert transitions by severity and the state entered (raised, acknowledged, "
    "escalated, resolved). Escalations are alerts nobody acknowledged in time.",
    ["severity", "state"],
)
FHIR_REQUESTS: Final = Counter(
    "medhub_fhir_requests",
    "FHIR REST requests by interaction (FHIR R4 restful-interaction codes, plus capabilities "
    "and unknown for paths no route serves) and HTTP status.",
    ["interaction", "status"],
)
FHIR_REQUEST_SECONDS: Final = Histogram(
    "medhub_fhir_request_seconds",
    "FHIR REST request duration by interaction, from the request to the last byte of the "
    "answer (audit record included).",
    ["interaction"],
)
HTTP_REQUESTS: Final = Counter(
    "medhub_http_requests",
    "HTTP requests other than FHIR (JSON API, dashboards, auth, probes) by route template "
    "(unmatched when no route serves the path), method and status.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS: Final = Histogram(
    "medhub_http_request_seconds",
    "Duration of HTTP requests other than FHIR by route template, to the last byte of the "
    "answer (audit record included).",
    ["route"],
)
COLLECT_ERRORS: Final = Counter(
    "medhub_metrics_collect_errors",
    "Scrape-time sources that failed and were left out of a scrape, by source (a database "
    "that is down shows here, not as a failed scrape).",
    ["source"],
)

#: Issue-type codes (FHIR R4 valueset-issue-type) and medhub's own rejection reasons:
#: the values ``medhub_samples_rejected_total{reason}`` may take.
REJECT_REASONS: Final = frozenset(
    {
        "invalid",
        "structure",
        "required",
        "value",
        "invariant",
        "too-long",
        "code-invalid",
        "not-supported",
        "duplicate",
        "not-found",
        "business-rule",
        "processing",
        "exception",
        "parser-error",
        "store-refused",
        "overflow",
    }
)


def bounded(value: str, allowed: frozenset[str], other: str = "other") -> str:
    """``value`` if one of ``allowed``, else ``other``: a label from the wire stays bounded."""
    return value if value in allowed else other


def count_rejected(source: str, reason: str, count: int = 1) -> None:
    """Count device data refused (a rare path: the child is looked up on each call)."""
    SAMPLES_REJECTED.labels(source, bounded(reason, REJECT_REASONS)).inc(count)


def gauge(
    name: str,
    documentation: str,
    labels: Sequence[str],
    values: Iterable[tuple[Sequence[str], float]],
) -> GaugeMetricFamily:
    """A gauge family with one sample per ``(label values, value)``."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in values:
        family.add_metric(list(label_values), value)
    return family


@dataclass(frozen=True, slots=True)
class ScrapeSource:
    """Gauge families read at scrape time; ``name`` labels the source's collect errors."""

    name: str
    read: Callable[[], Iterable[Metric]]


class ScrapeCollector:
    """Renders :class:`ScrapeSource` families; a failing source is skipped and counted.

    Each source is read in full before any of its families is kept, so a source
    that fails half-way leaves nothing misleading behind.
    """

    def __init__(self, sources: Sequence[ScrapeSource]) -> None:
        self.sources = tuple(sources)

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            try:
                families = list(source.read())
            except Exception as exc:  # the scrape during an outage is the one that matters
                COLLECT_ERRORS.labels(source.name).inc()
                log.warning("metrics.source_failed", source=source.name, error=str(exc)[:500])
                continue
            yield from families


def exposition(scraped: Collector | None = None) -> bytes:
    """The text exposition: ``scraped`` (read first, so its errors are counted in this
    scrape) followed by the process-wide default registry."""
    head = generate_latest(scraped) if scraped is not None else b""
    return head + generate_latest(REGISTRY)
