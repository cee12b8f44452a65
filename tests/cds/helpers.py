"""Shared by the detector tests: run the kernel and the reference, compare their events."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from medhub.cds.alarm_rules import EventRow, ReferenceDetector
from medhub.cds.detector import AlarmEvent, Detector, StreamKey
from medhub.cds.vital_limits import VitalLimits

SECOND = 1_000_000

#: Columns of the MIMIC-II numerics file -> (vital, channel).
CORPUS_COLUMNS = {
    "HR [/min]": ("heart-rate", "ecg"),
    "ABPSys [mm[Hg]]": ("systolic-blood-pressure", "abp"),
    "ABPDias [mm[Hg]]": ("diastolic-blood-pressure", "abp"),
    "ABPMean [mm[Hg]]": ("mean-blood-pressure", "abp"),
    "PULSE [/min]": ("pulse-rate", "spo2"),
    "RESP [/min]": ("respiratory-rate", "imp"),
    "SpO2 [%]": ("oxygen-saturation", "spo2"),
    "NBPSys [mm[Hg]]": ("systolic-blood-pressure", "nbp"),
    "NBPDias [mm[Hg]]": ("diastolic-blood-pressure", "nbp"),
    "NBPMean [mm[Hg]]": ("mean-blood-pressure", "nbp"),
}


def row(event: AlarmEvent) -> EventRow:
    return EventRow(
        event.stream,
        event.time_us,
        int(event.condition),
        int(event.transition),
        int(event.priority),
        int(event.acknowledged),
        event.value,
        event.limit,
    )


def comparable(rows: Sequence[EventRow]) -> list[tuple[object, ...]]:
    """NaN != NaN, so NaN values and limits become None before comparing."""
    return [tuple(None if isinstance(x, float) and math.isnan(x) else x for x in r) for r in rows]


def pair(limits: Sequence[VitalLimits]) -> tuple[Detector, ReferenceDetector]:
    detector = Detector(capacity=2, event_capacity=16)  # small: exercises growth and draining
    reference = ReferenceDetector()
    for i, lim in enumerate(limits):
        detector.register(StreamKey("heart-rate", f"dev{i}"), lim)
        reference.register(lim)
    return detector, reference


def read_corpus(path: Path) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """(vital, channel) -> (times in us, values); empty cells and 0.0 ("not connected") NaN."""
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {
        key: ([], []) for key in CORPUS_COLUMNS.values()
    }
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            t = int(record["t_seconds"]) * SECOND
            for column, key in CORPUS_COLUMNS.items():
                cell = record[column]
                value = float(cell) if cell else math.nan
                series[key][0].append(t)
                series[key][1].append(math.nan if value == 0.0 else value)
    return series
