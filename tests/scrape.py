"""Reading metrics as Prometheus does: parse the text exposition, look one sample up.

Counters and histograms are process-wide and other tests move them too, so
tests compare a value before and after what they do (:class:`Delta`).
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from medhub.metrics import exposition

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def has(samples: Samples, name: str, **labels: str) -> bool:
    return (name, frozenset(labels.items())) in samples


def current() -> Samples:
    """The process-wide metrics, scraped now."""
    return parse(exposition().decode())


class Delta:
    """How much samples moved since this object was made (``Delta()`` ... ``delta(name)``)."""

    def __init__(self, before: Samples | None = None) -> None:
        self.before = before if before is not None else current()

    def __call__(self, name: str, after: Samples | None = None, **labels: str) -> float:
        now = after if after is not None else current()
        return value(now, name, **labels) - value(self.before, name, **labels)
