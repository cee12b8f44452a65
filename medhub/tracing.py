"""OpenTelemetry tracing: off unless an OTLP endpoint is configured.

With ``MEDHUB_TRACING__OTLP_ENDPOINT`` unset no SDK is installed and the spans
below are OpenTelemetry's no-op spans (about a microsecond each), so an edge box
pays nothing. Set, spans are batched to the collector over OTLP/HTTP:
``http.request`` per API request, ``hl7.inbound`` per applied HL7 message,
``mllp.outbound`` per outbound exchange, ``outbox.relay`` per event relayed.
Each carries the work's ``medhub.correlation_id``; none carries patient data
(no names, identifiers or payloads), only types, ids medhub made and outcomes.

Outside :mod:`medhub`'s layers (like :mod:`medhub.errors`): every layer traces its work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

from medhub import __version__
from medhub.correlation import current_correlation_id

TRACER_NAME: Final = "medhub"
CORRELATION_ATTRIBUTE: Final = "medhub.correlation_id"

_provider: TracerProvider | None = None


def configure_tracing(
    exporter: SpanExporter | None, *, service_name: str = "medhub", sample_ratio: float = 1.0
) -> TracerProvider | None:
    """Install a tracer provider exporting to ``exporter``; None leaves tracing off.

    OpenTelemetry lets the global provider be set once per process, so the
    provider is kept here and later calls add their exporter to it (tests add an
    in-memory one).
    """
    global _provider
    if exporter is None:
        return _provider
    if _provider is None:
        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        _provider = TracerProvider(resource=resource, sampler=ParentBasedTraceIdRatio(sample_ratio))
        trace.set_tracer_provider(_provider)
    _provider.add_span_processor(BatchSpanProcessor(exporter))
    return _provider


def otlp_exporter(endpoint: str) -> SpanExporter:
    """The OTLP/HTTP exporter (``http://collector:4318/v1/traces``)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


@contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[trace.Span]:
    """A span named ``name`` with ``attributes`` and the current correlation id."""
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name) as current:
        correlation = current_correlation_id()
        if correlation is not None:
            current.set_attribute(CORRELATION_ATTRIBUTE, correlation)
        for key, value in attributes.items():
            current.set_attribute(key, value)
        yield current
