"""The serial line parser registry: the shipped parser by name, and a site's own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from medhub.devices.line_parsers import (
    LineParser,
    LineParserRegistry,
    ParserConfig,
    default_registry,
)
from medhub.devices.samples import Sample
from medhub.errors import ConfigurationError

LINE = b"02/22/16 22:47:45 SN=0000123456 SPO2=098% BPM=097 PI=03.60% ALARM=0000 EXC=000800"


def test_masimo_ascii1_ships_and_uses_the_configured_device_and_zone() -> None:
    registry = default_registry()
    assert registry.names() == ("masimo-ascii1",)
    parser = registry.create("masimo-ascii1", ParserConfig("pox-1", timezone(-timedelta(hours=5))))
    samples = parser.parse(LINE).samples
    assert {s.device_id for s in samples} == {"pox-1"}
    assert samples[0].device_time == datetime(2016, 2, 23, 3, 47, 45, tzinfo=UTC)


def test_each_stream_gets_its_own_parser_instance() -> None:
    registry = default_registry()
    config = ParserConfig("pox-1")
    assert registry.create("masimo-ascii1", config) is not registry.create("masimo-ascii1", config)


@dataclass(frozen=True)
class _Parsed:
    samples: Sequence[Sample]


class _CsvParser:
    """A site's own device: ``hr,spo2`` per line."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id

    def parse(self, line: bytes) -> _Parsed:
        hr, spo2 = (float(v) for v in line.split(b","))
        now = datetime(2026, 11, 21, tzinfo=UTC)
        return _Parsed(
            [
                Sample(self.device_id, "heart-rate", hr, "/min", now),
                Sample(self.device_id, "oxygen-saturation", spo2, "%", now),
            ]
        )


def _csv(config: ParserConfig) -> LineParser:
    return _CsvParser(config.device_id)


def test_a_site_registers_its_own_parser() -> None:
    registry = default_registry()
    registry.register("acme-csv", _csv)
    assert registry.names() == ("acme-csv", "masimo-ascii1")
    samples = registry.create("acme-csv", ParserConfig("bed-4")).parse(b"72,97").samples
    assert [(s.vital, s.value) for s in samples] == [
        ("heart-rate", 72.0),
        ("oxygen-saturation", 97.0),
    ]


def test_a_name_cannot_be_taken_twice_unless_replacing() -> None:
    registry = default_registry()
    with pytest.raises(ConfigurationError, match="already"):
        registry.register("masimo-ascii1", _csv)
    registry.register("masimo-ascii1", _csv, replace=True)
    assert isinstance(registry.create("masimo-ascii1", ParserConfig("x")), _CsvParser)


@pytest.mark.parametrize("name", ["", "Masimo", "has space", "-lead", "x" * 65, "a/b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError):
        LineParserRegistry().register(name, _csv)


def test_an_unknown_parser_is_a_configuration_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="masimo-ascii1"):
        default_registry().create("philips-intellivue", ParserConfig("x"))
    with pytest.raises(ConfigurationError, match="none"):
        LineParserRegistry().create("any", ParserConfig("x"))
