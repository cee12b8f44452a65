"""Masimo Radical-7 / Rad-8 / Radical-5 serial output, "ASCII 1" mode: one line -> samples.

The oximeter writes one line a second (RS-232, 9600 8N1), ended by CR LF::

    02/22/16 22:47:45 SN=0000123456 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-%
        DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000800

(one line on the wire). Radical-5 and Rad-8 send fewer fields
(``SPO2 BPM PI ALARM EXC``; ALARM two hex digits, EXC three). What this parser
relies on, and why:

* **Date and time** first, ``MM/DD/YY HH:MM:SS``, in the device's local time
  with no zone. The parser is configured with the zone of the device's clock;
  years are 2000-2099. A local time that does not exist in that zone (the
  spring-forward gap) is refused: the device clock does not follow DST, so the
  configured zone is wrong (use a fixed offset such as ``Etc/GMT-1``). A local
  time that exists twice (fall-back) is taken as the first occurrence unless
  that would go back in time from the previous line, so one parser instance
  belongs to one serial stream.
* **Dashes mean "no valid value"** (``---``, ``--.-``, ``+--``): no sample. So
  does 000 for SpO2 and pulse rate and 00.00 for PI, which Masimo prints when
  the sensor is off the patient (Rad-8 operator's manual, trend data sample).
  SpCO and SpMet of 00.0 are real values.
* **Every known field has a fixed width** (SPO2 three digits, PI ``dd.dd``…) and
  **the line must end with EXC**, so a line cut short or hit by noise is
  refused whole rather than charted from its surviving half. Unknown fields (a
  newer firmware's) are kept as text and do not fail the line.
* **EXC** is a hex bit field. The bits decoded into names are the ones the Rad-8
  and Rad-57 operator's manuals document ("Trend data format": 001 no sensor …
  800 Masimo SET); bits 100 and 200 are reserved there. Higher bits (Radical-7:
  cables, sensor life, SpCO/SpMet confidence) and the **ALARM** bits are not
  decoded: the only description found is a third-party transcription, so they
  are kept raw (``alarm``/``exception``) and listed as unverified in
  docs/devices.md.

Samples: SPO2 -> ``oxygen-saturation`` (%), BPM -> ``pulse-rate`` (/min: the
oximeter's pulse rate, not an ECG heart rate), PI -> ``perfusion-index`` (%),
SPCO -> ``carboxyhemoglobin`` (%), SPMET -> ``methemoglobin`` (%), with the MDC
code where IEEE 11073-10101 has one. DESAT, PIDELTA, PVI and SPHB are kept in
:attr:`MasimoRecord.values` but are not charted vitals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Final

from medhub.devices.samples import Sample
from medhub.errors import InputError, Issue, MessageParseError

#: Longest line accepted; a Radical-7 line is about 150 characters.
MAX_LINE_LENGTH: Final = 512

_HEAD: Final = re.compile(r"(\d\d)/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)(?= |\Z)", re.ASCII)
_TOKEN: Final = re.compile(r"([A-Z][A-Z0-9]*)=(\S*)\Z", re.ASCII)

# field -> (pattern of its value, vital, UCUM unit, MDC code); vital None: kept, not charted.
_FIELDS: Final[dict[str, tuple[re.Pattern[str], str | None, str, str | None]]] = {
    "SPO2": (re.compile(r"(\d{3}|-{3})%?\Z"), "oxygen-saturation", "%", "150456"),
    "BPM": (re.compile(r"(\d{3}|-{3})\Z"), "pulse-rate", "/min", "149530"),
    "PI": (re.compile(r"(\d\d\.\d\d|--\.--)%?\Z"), "perfusion-index", "%", "150448"),
    "SPCO": (re.compile(r"(\d\d\.\d|--\.-)%?\Z"), "carboxyhemoglobin", "%", None),
    "SPMET": (re.compile(r"(\d\d\.\d|--\.-)%?\Z"), "methemoglobin", "%", None),
    "DESAT": (re.compile(r"(\d\d|--)\Z"), None, "", None),
    "PIDELTA": (re.compile(r"([+-]\d\d|[+-]?--)\Z"), None, "", None),
    "PVI": (re.compile(r"(\d{3}|-{3})%?\Z"), None, "", None),
}
#: Upper bound of each charted field (the oximeter's display range, or 100 %).
_MAXIMUM: Final[dict[str, float]] = {
    "SPO2": 100,
    "BPM": 400,
    "PI": 20,
    "SPCO": 99.9,
    "SPMET": 99.9,
}
#: Zero means "no reading" for these (see module docs).
_ZERO_IS_ABSENT: Final = frozenset({"SPO2", "BPM", "PI"})
_HEX_FIELDS: Final[dict[str, re.Pattern[str]]] = {
    "ALARM": re.compile(r"[0-9A-Fa-f]{2}(?:[0-9A-Fa-f]{2})?\Z"),
    "EXC": re.compile(r"[0-9A-Fa-f]{3}(?:[0-9A-Fa-f]{3})?\Z"),
}
_SERIAL: Final = re.compile(r"[0-9A-Za-z-]{1,32}\Z")

#: EXC bits documented by Masimo (Rad-8 / Rad-57 operator's manuals, "Trend data format").
EXCEPTION_BITS: Final[dict[int, str]] = {
    0x001: "no-sensor",
    0x002: "defective-sensor",
    0x004: "low-perfusion",
    0x008: "pulse-search",
    0x010: "interference",
    0x020: "sensor-off",
    0x040: "ambient-light",
    0x080: "unrecognized-sensor",
    0x400: "low-signal-iq",
    0x800: "masimo-set",
}


@dataclass(frozen=True, slots=True)
class MasimoRecord:
    """One parsed ASCII 1 line: its samples, and everything else the line said.

    ``values`` holds every numeric field (None where the device sent dashes),
    ``other`` the fields this parser does not know, as sent. ``alarm`` and
    ``exception`` are the raw bit fields (None if absent); ``exception_flags``
    names the documented EXC bits that are set.
    """

    device_time: datetime
    samples: tuple[Sample, ...]
    serial_number: str | None = None
    values: Mapping[str, float | None] = field(default_factory=dict)
    alarm: int | None = None
    exception: int | None = None
    exception_flags: frozenset[str] = frozenset()
    other: Mapping[str, str] = field(default_factory=dict)

    @property
    def sent_at(self) -> datetime:
        """The device clock when the line was sent: ASCII 1 is real-time output."""
        return self.device_time


def exception_flags(exception: int) -> frozenset[str]:
    """The names of the documented EXC bits set in ``exception``."""
    return frozenset(name for bit, name in EXCEPTION_BITS.items() if exception & bit)


def _refuse(message: str, where: str, line: str, code: str = "structure") -> MessageParseError:
    return MessageParseError(
        f"{message}: {line[:80]!r}", [Issue(message, code, expression=(where,))]
    )


class MasimoAscii1Parser:
    """Parses the ASCII 1 lines of one serial stream (keeps the last time, for DST fall-back).

    ``parse`` raises :class:`MessageParseError` (garbage, truncated, malformed
    field) or :class:`InputError` (a value or time that cannot be right); it
    never raises anything else for any input.
    """

    def __init__(self, device_id: str, zone: tzinfo = UTC) -> None:
        self.device_id = device_id
        self.zone = zone
        self._last: datetime | None = None

    def parse(self, line: bytes | str) -> MasimoRecord:
        """One line, with or without its CR LF, -> :class:`MasimoRecord`."""
        text = _text(line)
        head = _HEAD.match(text)
        if head is None:
            raise _refuse("line does not start with MM/DD/YY HH:MM:SS", "time", text)
        moment = self._device_time(head, text)
        tokens = text[head.end() :].split()
        if not tokens or not tokens[-1].startswith("EXC="):
            raise _refuse("truncated line: it does not end with EXC=", "EXC", text)
        fields: dict[str, str] = {}
        for token in tokens:
            match = _TOKEN.match(token)
            if match is None:
                raise _refuse(f"{token[:20]!r} is not FIELD=value", "line", text)
            name, value = match.groups()
            if name in fields:
                raise _refuse(f"{name} appears twice", name, text)
            fields[name] = value
        record = self._record(moment, fields, text)
        self._last = moment
        return record

    def _device_time(self, head: re.Match[str], text: str) -> datetime:
        month, day, year, hour, minute, second = (int(part) for part in head.groups())
        try:
            naive = datetime(2000 + year, month, day, hour, minute, second)
        except ValueError:
            raise _refuse("date or time is not valid", "time", text, "value") from None
        local = naive.replace(tzinfo=self.zone)
        moment = local.astimezone(UTC)
        if moment.astimezone(self.zone).replace(tzinfo=None) != naive:
            raise InputError(
                f"{naive} does not exist in {self.zone} (DST gap): the device clock does "
                "not follow DST; configure its zone as a fixed offset",
                [Issue("local time does not exist in the device zone", expression=("time",))],
            )
        later = local.replace(fold=1).astimezone(UTC)
        if later != moment and self._last is not None and moment < self._last <= later:
            moment = later  # the second pass through the repeated hour
        return moment

    def _record(self, moment: datetime, fields: dict[str, str], text: str) -> MasimoRecord:
        samples: list[Sample] = []
        values: dict[str, float | None] = {}
        other: dict[str, str] = {}
        raw_bits: dict[str, int] = {}
        serial = None
        for name, value in fields.items():
            spec = _FIELDS.get(name)
            if spec is not None:
                pattern, vital, unit, mdc = spec
                if pattern.match(value) is None:
                    raise _refuse(f"{name}={value[:12]} is malformed", name, text)
                number = _number(value)
                values[name] = number
                if vital is None or number is None:
                    continue
                if number > _MAXIMUM[name]:
                    raise InputError(
                        f"{name}={value} is above {_MAXIMUM[name]:g}: not a measurement",
                        [Issue(f"{name} out of range", "value", expression=(name,))],
                    )
                if number == 0 and name in _ZERO_IS_ABSENT:
                    continue
                samples.append(Sample(self.device_id, vital, number, unit, moment, mdc))
            elif name in _HEX_FIELDS:
                if _HEX_FIELDS[name].match(value) is None:
                    raise _refuse(f"{name}={value[:12]} is not a hex bit field", name, text)
                raw_bits[name] = int(value, 16)
            elif name == "SN":
                if _SERIAL.match(value) is None:
                    raise _refuse(f"SN={value[:40]} is malformed", "SN", text)
                serial = value
            else:
                other[name] = value
        exception = raw_bits.get("EXC")
        return MasimoRecord(
            device_time=moment,
            samples=tuple(samples),
            serial_number=serial,
            values=values,
            alarm=raw_bits.get("ALARM"),
            exception=exception,
            exception_flags=exception_flags(exception or 0),
            other=other,
        )


def _text(line: bytes | str) -> str:
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_LENGTH + 2:
            raise _refuse(f"line longer than {MAX_LINE_LENGTH}", "line", repr(line[:80]))
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError:
            raise _refuse(
                "line has non-ASCII bytes (noise or wrong baud rate)", "line", repr(line[:80])
            ) from None
    text = line.rstrip("\r\n ")
    if len(text) > MAX_LINE_LENGTH:
        raise _refuse(f"line longer than {MAX_LINE_LENGTH}", "line", text)
    if not text.isprintable():
        raise _refuse("line has control characters (noise or wrong baud rate)", "line", text)
    return text


def _number(value: str) -> float | None:
    digits = value.rstrip("%")
    if "--" in digits:
        return None
    return float(digits)
