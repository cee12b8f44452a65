"""Reading and checking register-map files (the format is in :mod:`medhub.devices.register_map`).

A wrong map is worse than no map: a misplaced address or a wrong scale charts a
plausible but false vital. So the check is strict (unknown keys are errors,
which catches ``adress``), and it reports every problem of a file at once, each
naming the file and the entry (``monitor.toml: value[2] 'spo2': ...``), as one
:class:`ConfigurationError` whose issues carry the path of the bad key.
"""

from __future__ import annotations

import contextlib
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Final, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from medhub.clinical.vital_codes import ALL_VITAL_SIGNS, VitalSign
from medhub.devices.register_map import (
    MAX_REGISTERS_PER_READ,
    ClockFormat,
    ClockRegisters,
    DataType,
    Encoding,
    Function,
    Order,
    RegisterMap,
    RegisterValue,
    StatusFlag,
)
from medhub.errors import ConfigurationError, Issue

_TOP_KEYS: Final = {
    "model",
    "description",
    "byte_order",
    "word_order",
    "max_registers_per_read",
    "max_gap",
    "clock",
    "flag",
    "value",
}
_VALUE_KEYS: Final = {
    "name",
    "vital",
    "function",
    "address",
    "type",
    "byte_order",
    "word_order",
    "scale",
    "offset",
    "unit",
    "invalid",
    "mdc",
    "channel",
    "requires",
}
_FLAG_KEYS: Final = {"name", "function", "address"}
_CLOCK_KEYS: Final = {"function", "address", "format", "zone", "byte_order", "word_order"}
_VITALS: Final = {vital.key: vital for vital in ALL_VITAL_SIGNS}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Invalid(Exception):
    """One entry is unusable; its problems are already recorded."""


class _Checker:
    """Collects problems while building the map, so all of them are reported together."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[Issue] = []

    def problem(self, where: str, path: str, text: str) -> None:
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        self.issues.append(Issue(message=prefix + text, expression=(path,)))

    def get(
        self, table: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str, path: str
    ) -> Any:
        value = table.get(key)
        if value is None:
            self.problem(where, _join(path, key), f"{key!r} is required")
            raise _Invalid
        allowed = kinds if isinstance(kinds, tuple) else (kinds,)
        wrong_bool = isinstance(value, bool) and bool not in allowed  # bool is an int subclass
        if wrong_bool or not isinstance(value, kinds):
            self.problem(where, _join(path, key), f"{key!r} has the wrong type")
            raise _Invalid
        return value

    def choice(
        self, table: dict[str, Any], key: str, choices: tuple[str, ...], where: str, path: str
    ) -> str:
        value = cast(str, self.get(table, key, str, where, path))
        if value not in choices:
            self.problem(
                where, _join(path, key), f"{key} {value!r} is not one of {', '.join(choices)}"
            )
            raise _Invalid
        return value

    def unknown_keys(self, table: dict[str, Any], allowed: set[str], where: str, path: str) -> None:
        for key in sorted(set(table) - allowed):
            self.problem(where, _join(path, key), f"unknown key {key!r} (typo?)")

    def address(self, table: dict[str, Any], count: int, where: str, path: str) -> int:
        address = cast(int, self.get(table, "address", int, where, path))
        if not 0 <= address <= 65536 - count:
            last = 65536 - count
            self.problem(where, f"{path}.address", f"address {address} is outside 0..{last}")
            raise _Invalid
        return address

    def encoding(
        self, table: dict[str, Any], data_type: DataType, defaults: Encoding, where: str, path: str
    ) -> Encoding:
        orders = get_args(Order)
        byte_order = table.get("byte_order", defaults.byte_order)
        word_order = table.get("word_order", defaults.word_order)
        for key, value in (("byte_order", byte_order), ("word_order", word_order)):
            if value not in orders:
                self.problem(where, _join(path, key), f"{key} {value!r} is not big or little")
                raise _Invalid
        return Encoding(data_type, cast(Order, byte_order), cast(Order, word_order))

    def fail(self) -> None:
        if self.issues:
            detail = "; ".join(issue.message for issue in self.issues)
            raise ConfigurationError(
                f"{len(self.issues)} problem(s) in register map: {detail}", list(self.issues)
            )


def _where(kind: str, index: int, table: dict[str, Any]) -> str:
    name = table.get("name")
    return f"{kind}[{index}] {name!r}" if isinstance(name, str) else f"{kind}[{index}]"


def _number(
    check: _Checker, table: dict[str, Any], key: str, default: float, where: str, path: str
) -> float:
    if key not in table:
        return default
    value = check.get(table, key, (int, float), where, path)
    if not math.isfinite(value):
        check.problem(where, _join(path, key), f"{key} must be a finite number")
        raise _Invalid
    return float(value)


def _sentinels(
    check: _Checker, table: dict[str, Any], data_type: DataType, where: str, path: str
) -> frozenset[float]:
    """Raw "no value" sentinels; each must fit the type, so 0x8000 in an int16 is caught."""
    given = table.get("invalid", [])
    items = given if isinstance(given, list) else [given]
    sentinels: set[float] = set()
    low, high = data_type.int_range()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            check.problem(where, f"{path}.invalid", f"invalid sentinel {item!r} is not a number")
            raise _Invalid
        if not data_type.is_float and not (isinstance(item, int) and low <= item <= high):
            check.problem(
                where,
                f"{path}.invalid",
                f"invalid sentinel {item!r} cannot occur in a {data_type} ({low}..{high}); "
                f"write the raw value as the type reads it (0x8000 in an int16 is -32768)",
            )
            raise _Invalid
        sentinels.add(item)
    return frozenset(sentinels)


def _mdc(
    check: _Checker, table: dict[str, Any], vital: VitalSign, where: str, path: str
) -> str | None:
    if "mdc" not in table:
        return None
    given = str(check.get(table, "mdc", (str, int), where, path))
    codes = {str(code): str(code) for code, _ in vital.mdc} | {ref: str(c) for c, ref in vital.mdc}
    if given not in codes:
        known = ", ".join(f"{code} ({ref})" for code, ref in vital.mdc)
        check.problem(where, f"{path}.mdc", f"mdc {given!r} is not a code of {vital.key}: {known}")
        raise _Invalid
    return codes[given]


def _value(
    check: _Checker, index: int, table: dict[str, Any], defaults: Encoding, flags: set[str]
) -> RegisterValue:
    where, path = _where("value", index, table), f"value[{index}]"
    check.unknown_keys(table, _VALUE_KEYS, where, path)
    name = cast(str, check.get(table, "name", str, where, path))
    vital_key = cast(str, check.get(table, "vital", str, where, path))
    vital = _VITALS.get(vital_key)
    if vital is None:
        check.problem(
            where, f"{path}.vital", f"unknown vital {vital_key!r}; known: {', '.join(_VITALS)}"
        )
        raise _Invalid
    function = Function(check.choice(table, "function", ("holding", "input"), where, path))
    data_type = DataType(check.choice(table, "type", tuple(DataType), where, path))
    encoding = check.encoding(table, data_type, defaults, where, path)
    address = check.address(table, data_type.registers, where, path)
    scale = _number(check, table, "scale", 1.0, where, path)
    if scale == 0:
        check.problem(where, f"{path}.scale", "scale must not be 0")
        raise _Invalid
    unit = table.get("unit", vital.ucum)
    if unit != vital.ucum:
        check.problem(
            where,
            f"{path}.unit",
            f"unit {unit!r} is not {vital.ucum!r}, the UCUM unit medhub keeps {vital.key} in; "
            "convert with scale and offset",
        )
        raise _Invalid
    requires = None
    if "requires" in table:
        requires = cast(str, check.get(table, "requires", str, where, path))
    if requires is not None and requires not in flags:
        check.problem(where, f"{path}.requires", f"requires unknown flag {requires!r}")
        raise _Invalid
    channel = table.get("channel", name)
    return RegisterValue(
        name=name,
        vital=vital,
        function=function,
        address=address,
        encoding=encoding,
        scale=scale,
        offset=_number(check, table, "offset", 0.0, where, path),
        invalid=_sentinels(check, table, data_type, where, path),
        mdc_code=_mdc(check, table, vital, where, path),
        channel=str(channel),
        requires=requires,
    )


def _flag(check: _Checker, index: int, table: dict[str, Any]) -> StatusFlag:
    where, path = _where("flag", index, table), f"flag[{index}]"
    check.unknown_keys(table, _FLAG_KEYS, where, path)
    name = cast(str, check.get(table, "name", str, where, path))
    function = Function(check.choice(table, "function", ("coil", "discrete"), where, path))
    return StatusFlag(name, function, check.address(table, 1, where, path))


def _clock(check: _Checker, table: dict[str, Any], defaults: Encoding) -> ClockRegisters:
    where, path = "clock", "clock"
    check.unknown_keys(table, _CLOCK_KEYS, where, path)
    function = Function(check.choice(table, "function", ("holding", "input"), where, path))
    clock_format = cast(
        ClockFormat, check.choice(table, "format", get_args(ClockFormat), where, path)
    )
    zone_name = table.get("zone", "UTC")
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        check.problem(where, f"{path}.zone", f"unknown time zone {zone_name!r}")
        raise _Invalid from None
    encoding = check.encoding(table, DataType.UINT32, defaults, where, path)
    count = 6 if clock_format == "datetime6" else 2
    address = check.address(table, count, where, path)
    return ClockRegisters(function, address, clock_format, zone, encoding)


def _tables(check: _Checker, document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    tables = document.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        check.problem("", key, f"{key!r} must be an array of tables ([[{key}]])")
        return []
    return tables


def _unique_names(check: _Checker, kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            check.problem("", kind, f"{kind} name {name!r} is used twice")
        seen.add(name)


def _header(check: _Checker, document: dict[str, Any]) -> tuple[str, Encoding, int, int]:
    """Model name, default encoding, request size limit and allowed gap, each checked alone."""
    check.unknown_keys(document, _TOP_KEYS, "", "")
    model, limit, gap = "", MAX_REGISTERS_PER_READ, 0
    defaults = Encoding(DataType.UINT16)
    with contextlib.suppress(_Invalid):
        model = cast(str, check.get(document, "model", str, "", ""))
    with contextlib.suppress(_Invalid):
        defaults = check.encoding(document, DataType.UINT16, defaults, "", "")
    with contextlib.suppress(_Invalid):
        if "max_registers_per_read" in document:
            limit = cast(int, check.get(document, "max_registers_per_read", int, "", ""))
            if not 1 <= limit <= MAX_REGISTERS_PER_READ:
                check.problem("", "max_registers_per_read", "max_registers_per_read must be 1..125")
    with contextlib.suppress(_Invalid):
        if "max_gap" in document:
            gap = cast(int, check.get(document, "max_gap", int, "", ""))
            if not 0 <= gap < min(limit, MAX_REGISTERS_PER_READ):
                check.problem(
                    "", "max_gap", "max_gap must be 0 or more and below the request limit"
                )
    return model, defaults, limit, gap


def _entries(
    check: _Checker, document: dict[str, Any], defaults: Encoding
) -> tuple[list[StatusFlag], list[RegisterValue]]:
    flags: list[StatusFlag] = []
    for index, table in enumerate(_tables(check, document, "flag")):
        with contextlib.suppress(_Invalid):
            flags.append(_flag(check, index, table))
    flag_names = {f.name for f in flags}
    values: list[RegisterValue] = []
    for index, table in enumerate(_tables(check, document, "value")):
        with contextlib.suppress(_Invalid):
            values.append(_value(check, index, table, defaults, flag_names))
    if not document.get("value"):
        check.problem("", "value", "the map has no [[value]] entries")
    _unique_names(check, "flag", [f.name for f in flags])
    _unique_names(check, "value", [v.name for v in values])
    return flags, values


def _optional_clock(
    check: _Checker, document: dict[str, Any], defaults: Encoding
) -> ClockRegisters | None:
    if "clock" not in document:
        return None
    if not isinstance(document["clock"], dict):
        check.problem("clock", "clock", "clock must be a table ([clock])")
        return None
    try:
        return _clock(check, document["clock"], defaults)
    except _Invalid:
        return None


def _build(check: _Checker, document: dict[str, Any]) -> RegisterMap | None:
    model, defaults, limit, gap = _header(check, document)
    flags, values = _entries(check, document, defaults)
    clock = _optional_clock(check, document, defaults)
    if check.issues:
        return None
    description = str(document.get("description", ""))
    return RegisterMap(
        model, check.source, tuple(values), tuple(flags), clock, description, limit, gap
    )


def parse_register_map(text: str, *, source: str) -> RegisterMap:
    """Check a map file's text and build the map; ``source`` names the file in errors.

    Raises :class:`ConfigurationError` listing every problem found.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}") from exc
    check = _Checker(source)
    built = _build(check, document)
    check.fail()
    assert built is not None
    return built


def load_register_map(path: Path) -> RegisterMap:
    """Read and check a map file from disk."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read register map: {exc}") from exc
    return parse_register_map(text, source=str(path))


def shipped_map_names() -> list[str]:
    """The models whose maps ship with medhub (``register_maps/*.toml``)."""
    folder = resources.files("medhub.devices").joinpath("register_maps")
    names = (entry.name for entry in folder.iterdir())
    return sorted(name.removesuffix(".toml") for name in names if name.endswith(".toml"))


def shipped_map(model: str) -> RegisterMap:
    """A map shipped with medhub, by model name (e.g. ``generic-bedside-monitor``)."""
    if model not in shipped_map_names():
        raise ConfigurationError(
            f"no shipped register map {model!r}; shipped: {', '.join(shipped_map_names())}"
        )
    resource = resources.files("medhub.devices").joinpath("register_maps", f"{model}.toml")
    return parse_register_map(resource.read_text(encoding="utf-8"), source=f"{model}.toml")


def resolve_register_map(reference: str) -> RegisterMap:
    """A shipped model name, or a path to a map file (what settings and the CLI accept)."""
    if reference.endswith(".toml") or "/" in reference or "\\" in reference:
        return load_register_map(Path(reference))
    return shipped_map(reference)
