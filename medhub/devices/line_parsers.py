"""Serial line parsers by name: ``masimo-ascii1`` ships, a site registers its own.

A serial device speaks one line-oriented protocol; the serial reader is
configured with a parser *name* and asks a :class:`LineParserRegistry` for an
instance, one per stream (a parser may keep state across the lines of its
stream, as the Masimo parser does for the DST fall-back hour). A site with
another device writes a factory and registers it in the composition root::

    registry = default_registry()
    registry.register("acme-pox", lambda config: AcmePoxParser(config.device_id))

A parser takes one line without its terminator and returns something with a
``samples`` sequence, or raises :class:`medhub.errors.InputError` (a
``MessageParseError`` for garbage) whose issue names where the line is wrong;
the reader counts and logs those and goes on. Anything else a parser raises is
a bug in the parser, and the reader treats it the same way rather than stop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Final, Protocol

from medhub.devices.masimo import MasimoAscii1Parser
from medhub.devices.samples import Sample
from medhub.errors import ConfigurationError, Issue


class ParsedLine(Protocol):
    """What a parser returns for a good line; parsers add their own details.

    A result may also have ``sent_at`` (aware UTC datetime): the device's clock
    when it sent the line, which the reader passes on to the sink so ingest can
    estimate the device clock's offset. It is optional, so it is not part of
    the protocol; the reader reads it with ``getattr``.
    """

    @property
    def samples(self) -> Sequence[Sample]: ...


class LineParser(Protocol):
    """Turns one line of one stream into samples (pure apart from per-stream state)."""

    def parse(self, line: bytes) -> ParsedLine: ...


@dataclass(frozen=True, slots=True)
class ParserConfig:
    """What a parser factory gets: the device, the zone of its clock, free-form options."""

    device_id: str
    zone: tzinfo = UTC
    options: Mapping[str, str] = field(default_factory=dict)


ParserFactory = Callable[[ParserConfig], LineParser]

_NAME: Final = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}\Z")


class LineParserRegistry:
    """Parser factories by name; build it in the composition root, no module-level state."""

    def __init__(self, factories: Mapping[str, ParserFactory] | None = None) -> None:
        self._factories: dict[str, ParserFactory] = {}
        for name, factory in (factories or {}).items():
            self.register(name, factory)

    def register(self, name: str, factory: ParserFactory, *, replace: bool = False) -> None:
        """Add a parser under ``name`` (lower-case, digits, ``.``/``-``)."""
        if not _NAME.match(name):
            raise ConfigurationError(
                f"parser name {name!r} must be 1-64 of a-z 0-9 . - (starting with a-z or 0-9)",
                [Issue("bad parser name", expression=("parser",))],
            )
        if name in self._factories and not replace:
            raise ConfigurationError(
                f"a line parser named {name!r} is already registered",
                [Issue("duplicate parser name", expression=("parser",))],
            )
        self._factories[name] = factory

    def create(self, name: str, config: ParserConfig) -> LineParser:
        """A new parser for one stream; an unknown name is a configuration error."""
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(self.names()) or "none"
            raise ConfigurationError(
                f"no line parser named {name!r} (known: {known})",
                [Issue("unknown line parser", expression=("parser",))],
            )
        return factory(config)

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._factories))


def _masimo_ascii1(config: ParserConfig) -> LineParser:
    return MasimoAscii1Parser(config.device_id, config.zone)


#: The parsers medhub ships.
SHIPPED_PARSERS: Final[Mapping[str, ParserFactory]] = {"masimo-ascii1": _masimo_ascii1}


def default_registry() -> LineParserRegistry:
    """A new registry holding the shipped parsers, for the composition root to extend."""
    return LineParserRegistry(SHIPPED_PARSERS)
