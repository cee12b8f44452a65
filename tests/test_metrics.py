"""The metrics module: scrape-time sources that fail, bounded labels, the exposition format."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric

from medhub.metrics import (
    CONTENT_TYPE,
    ScrapeCollector,
    ScrapeSource,
    bounded,
    count_rejected,
    exposition,
    gauge,
)
from tests.scrape import Delta, has, parse, value


def queue_depth() -> Iterable[Metric]:
    yield gauge("medhub_test_queue", "A queue.", ["queue"], [(["a"], 3), (["b"], 0)])


def database_down() -> Iterable[Metric]:
    yield gauge("medhub_test_half", "Yielded before the failure.", [], [([], 1)])
    raise ConnectionRefusedError("connection refused (the database is down)")


def test_a_failing_source_is_left_out_and_counted_while_the_others_are_scraped() -> None:
    collector = ScrapeCollector(
        [ScrapeSource("test_queue", queue_depth), ScrapeSource("test_down", database_down)]
    )
    delta = Delta()
    samples = parse(exposition(collector).decode())
    assert value(samples, "medhub_test_queue", queue="a") == 3
    assert has(samples, "medhub_test_queue", queue="b")
    # nothing of the failing source, not even what it yielded before failing
    assert not any(name == "medhub_test_half" for name, _ in samples)
    assert delta("medhub_metrics_collect_errors_total", samples, source="test_down") == 1
    assert delta("medhub_metrics_collect_errors_total", samples, source="test_queue") == 0


def test_the_exposition_carries_the_default_registry_and_no_created_series() -> None:
    samples = parse(exposition().decode())
    assert any(name.startswith("python_gc_") for name, _ in samples)
    assert not any(name.endswith("_created") for name, _ in samples)
    text = exposition().decode()
    assert "# HELP medhub_hl7_messages_total " in text
    assert "# TYPE medhub_hl7_ack_seconds histogram" in text
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_label_values_from_the_wire_stay_in_their_set() -> None:
    assert bounded("structure", frozenset({"structure"})) == "structure"
    assert bounded("MRN-12345", frozenset({"structure"})) == "other"
    delta = Delta()
    count_rejected("serial", "Patient/123 said something odd", 2)
    count_rejected("serial", "value")
    assert delta("medhub_samples_rejected_total", source="serial", reason="other") == 2
    assert delta("medhub_samples_rejected_total", source="serial", reason="value") == 1
