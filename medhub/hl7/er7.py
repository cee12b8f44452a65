"""A sans-I/O parser for HL7 v2 ER7 ("pipe and hat") messages.

HL7 v2.5.1 §2.5-2.7: the field separator is MSH-1, the other encoding
characters (component, repetition, escape, sub-component, optionally
truncation) are MSH-2. Segments end with CR; LF and CRLF are tolerated because
real senders use them. Splitting is lazy: a segment's fields are split when the
message is parsed (cheap ``str.split``), components and escapes only when a
value is asked for, so only what is read gets decoded.

Values are addressed the HAPI "terser" way: ``PID-3[2].4.1`` is segment PID,
field 3, second repetition, component 4, sub-component 1 (1-based; the
repetition defaults to 1). For MSH, MSH-1 is the field separator itself and
MSH-2 the encoding characters, as the standard numbers them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from medhub.errors import Hl7Location, Issue, MessageParseError

#: MSH-18 character set names (HL7 table 0211) -> Python codecs.
CHARSETS: Final[dict[str, str]] = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "iso-8859-1",
    "8859/2": "iso-8859-2",
    "8859/5": "iso-8859-5",
    "8859/7": "iso-8859-7",
    "8859/15": "iso-8859-15",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "WINDOWS-1252": "cp1252",
}

UTF8_BOM: Final = b"\xef\xbb\xbf"
_SEGMENT_SPLIT: Final = re.compile(r"\r\n|\r|\n")
_SEGMENT_NAME: Final = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_PATH: Final = re.compile(
    r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\((?P<segrep>\d+)\))?-(?P<field>\d+)"
    r"(?:\[(?P<rep>\d+)\])?(?:\.(?P<comp>\d+))?(?:\.(?P<sub>\d+))?$"
)


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The encoding characters of one message (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


def _parse_error(message: str, location: Hl7Location, code: int = 102) -> MessageParseError:
    return MessageParseError(
        message, [Issue(message, code="structure", location=location, hl7_error_code=code)]
    )


def declared_charset(data: bytes) -> str:
    """The Python codec for MSH-18 of a raw message, read before decoding the bytes."""
    head = data[:4096].lstrip(b"\r\n\x00 \t").removeprefix(UTF8_BOM)
    first = _SEGMENT_SPLIT.split(head.decode("latin-1"), maxsplit=1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        return "ascii"
    fields = first.split(first[3])
    name = fields[17].split(fields[1][:1] or "^")[0].strip().upper() if len(fields) > 17 else ""
    return CHARSETS.get(name, "utf-8")


def decode_er7(data: bytes) -> str:
    """Bytes -> text using MSH-18; undecodable bytes are a parse error naming MSH-18.

    A leading UTF-8 byte order mark (written by many Windows tools) is dropped.
    """
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    if not data.lstrip(b"\r\n\x00 \t").startswith(b"MSH"):
        raise _parse_error("message does not start with an MSH segment", Hl7Location("MSH", 1))
    codec = declared_charset(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        if codec == "ascii":
            try:
                return data.decode("utf-8")  # MSH-18 empty but UTF-8 sent: common, harmless
            except UnicodeDecodeError:
                pass
        raise _parse_error(
            f"message bytes are not valid {codec} (MSH-18) at byte {exc.start}",
            Hl7Location("MSH", 1, 18),
        ) from exc


FieldTree = list[list[list[str]]]
"""One field decoded: repetitions -> components -> sub-components, all unescaped."""


class Segment:
    """One segment; ``fields[n]`` is field n as raw ER7 (escape sequences still in).

    A field is split into repetitions/components/sub-components and unescaped
    the first time it is read, then cached, so reading a field twice costs a
    lookup and fields never read cost nothing.
    """

    __slots__ = ("name", "fields", "_delims", "_trees")

    def __init__(self, name: str, fields: list[str], delimiters: Delimiters) -> None:
        self.name = name
        self.fields = fields
        self._delims = delimiters
        self._trees: list[FieldTree | None] | None = None

    def raw(self, number: int) -> str:
        """Field ``number`` as raw ER7, or ``""`` when absent."""
        return self.fields[number] if 0 <= number < len(self.fields) else ""

    def tree(self, number: int) -> FieldTree:
        """Field ``number`` fully decoded (``[]`` when absent or empty)."""
        if not 0 < number < len(self.fields):
            return []
        trees = self._trees
        if trees is None:
            trees = self._trees = [None] * len(self.fields)
        cached = trees[number]
        if cached is None:
            cached = trees[number] = self._decode(number)
        return cached

    def decode_all(self) -> list[FieldTree]:
        """Every field decoded at once (fields 1..n); one tight loop, for full parses."""
        d = self._delims
        rep, comp, sub, esc = d.repetition, d.component, d.subcomponent, d.escape
        fields = self.fields
        trees: list[FieldTree] = []
        start = 1
        if self.name == "MSH":
            trees = [[[[fields[1]]]], [[[fields[2]]]]] if len(fields) > 2 else []
            start = 3
        append = trees.append
        for raw in fields[start:]:
            if not raw:
                append([])
            elif comp not in raw and rep not in raw and sub not in raw and esc not in raw:
                append([[[raw]]])
            elif esc not in raw and sub not in raw:  # the common case: components only
                append([[[c] for c in r.split(comp)] for r in raw.split(rep)])
            else:
                append(
                    [
                        [
                            [unescape(x, d) if esc in x else x for x in c.split(sub)]
                            for c in r.split(comp)
                        ]
                        for r in raw.split(rep)
                    ]
                )
        self._trees = [None, *trees]
        return trees

    def _decode(self, number: int) -> FieldTree:
        raw = self.fields[number]
        if raw == "":
            return []
        d = self._delims
        if self.name == "MSH" and number in (1, 2):
            return [[[raw]]]
        if not _needs_split(raw, d):
            return [[[raw]]]
        esc = d.escape
        if esc not in raw and d.subcomponent not in raw:
            return [[[c] for c in r.split(d.component)] for r in raw.split(d.repetition)]
        return [
            [
                [unescape(sub, d) if esc in sub else sub for sub in comp.split(d.subcomponent)]
                for comp in rep.split(d.component)
            ]
            for rep in raw.split(d.repetition)
        ]

    def repetitions(self, number: int) -> list[str]:
        """The raw repetitions of a field (an absent field has none)."""
        raw = self.raw(number)
        if raw == "" or number == 0:
            return []
        if self.name == "MSH" and number in (1, 2):
            return [raw]
        return raw.split(self._delims.repetition)

    def value(
        self, number: int, repetition: int = 1, component: int = 1, subcomponent: int = 1
    ) -> str:
        """The unescaped text at field/repetition/component/sub-component (1-based)."""
        tree = self.tree(number)
        if repetition > len(tree):
            return ""
        comps = tree[repetition - 1]
        if component > len(comps):
            return ""
        subs = comps[component - 1]
        if subcomponent > len(subs):
            return ""
        return subs[subcomponent - 1]

    def components(self, number: int, repetition: int = 1) -> list[str]:
        """The unescaped components of one repetition (sub-components joined back with ``&``)."""
        tree = self.tree(number)
        if repetition > len(tree):
            return []
        sub = self._delims.subcomponent
        return [subs[0] if len(subs) == 1 else sub.join(subs) for subs in tree[repetition - 1]]

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, {len(self.fields) - 1} fields)"


def _needs_split(raw: str, d: Delimiters) -> bool:
    return d.repetition in raw or d.component in raw or d.subcomponent in raw or d.escape in raw


class Message:
    """A parsed ER7 message: its delimiters and segments, decoded lazily on access."""

    __slots__ = ("delimiters", "segments")

    def __init__(self, delimiters: Delimiters, segments: list[Segment]) -> None:
        self.delimiters = delimiters
        self.segments = segments

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def segment(self, name: str, occurrence: int = 1) -> Segment | None:
        """The n-th segment with this name (1-based), or None."""
        seen = 0
        for segment in self.segments:
            if segment.name == name:
                seen += 1
                if seen == occurrence:
                    return segment
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def get(self, path: str) -> str:
        """The value at a terser path such as ``PID-3[2].4.1`` or ``OBX(2)-5``; ``""`` if absent."""
        match = _PATH.match(path)
        if not match:
            raise ValueError(f"not a terser path: {path!r}")
        segment = self.segment(match["seg"], int(match["segrep"] or 1))
        if segment is None:
            return ""
        return segment.value(
            int(match["field"]),
            int(match["rep"] or 1),
            int(match["comp"] or 1),
            int(match["sub"] or 1),
        )

    def decode_all(self) -> list[tuple[str, list[FieldTree]]]:
        """Every field of every segment decoded (a *full* parse, e.g. for export or tests)."""
        return [(seg.name, seg.decode_all()) for seg in self.segments]

    @property
    def message_type(self) -> tuple[str, str, str]:
        """MSH-9 as (message code, trigger event, message structure)."""
        msh = self.msh
        return msh.value(9, 1, 1), msh.value(9, 1, 2), msh.value(9, 1, 3)

    @property
    def control_id(self) -> str:
        return self.msh.value(10)


_NAMES_SEEN: set[str] = set()


def _valid_segment_name(name: str) -> bool:
    """Segment ids are three of ``[A-Z0-9]`` starting with a letter; seen names are cached."""
    if name in _NAMES_SEEN:
        return True
    if not _SEGMENT_NAME.match(name):
        return False
    if len(_NAMES_SEEN) < 4096:
        _NAMES_SEEN.add(name)
    return True


def parse_er7(text: str) -> Message:
    """Parse ER7 text into a :class:`Message`.

    Raises :class:`MessageParseError` with the ERR location when the text does
    not start with a valid MSH segment or a segment name is malformed.
    """
    text = text.strip("\r\n\x00 \t\x0b\x1c\ufeff")
    if not text.startswith("MSH"):
        raise _parse_error("message does not start with an MSH segment", Hl7Location("MSH", 1))
    if len(text) < 8:
        raise _parse_error(
            "MSH segment is too short to hold its encoding characters", Hl7Location("MSH", 1, 2)
        )
    field_sep = text[3]
    if field_sep.isalnum() or field_sep in "\r\n":
        raise _parse_error(
            f"MSH-1 field separator {field_sep!r} is not allowed", Hl7Location("MSH", 1, 1)
        )
    encoding = text[4:].split(field_sep, 1)[0]
    if len(encoding) < 4 or len(set(encoding[:4] + field_sep)) != 5:
        raise _parse_error(
            f"MSH-2 encoding characters {encoding!r} are incomplete or repeated",
            Hl7Location("MSH", 1, 2),
        )
    delims = Delimiters(field_sep, encoding[0], encoding[1], encoding[2], encoding[3])
    segments: list[Segment] = []
    lines = text.split("\r") if "\n" not in text else _SEGMENT_SPLIT.split(text)
    for index, line in enumerate(lines, start=1):
        if not line or line.isspace():
            continue
        name = line[:3]
        if (len(line) > 3 and line[3] != field_sep) or not _valid_segment_name(name):
            raise _parse_error(
                f"segment {index} has no valid segment name: {line[:20]!r}",
                Hl7Location(name if _SEGMENT_NAME.match(name) else "", index),
            )
        fields = line.split(field_sep)
        if name == "MSH":
            fields = ["MSH", field_sep, *fields[1:]]
        segments.append(Segment(name, fields, delims))
    message = Message(delims, segments)
    for number, label in (
        (9, "message type"),
        (10, "message control id"),
        (11, "processing id"),
        (12, "version id"),
    ):
        if not message.msh.value(number):
            raise _parse_error(
                f"MSH-{number} ({label}) is missing", Hl7Location("MSH", 1, number), 101
            )
    return message


def unescape(value: str, delims: Delimiters) -> str:
    """Replace HL7 escape sequences (v2.5.1 §2.7): \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\."""
    esc = delims.escape
    if esc not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        end = value.find(esc, i + 1) if ch == esc else -1
        if end == -1:
            out.append(ch)
            i += 1
            continue
        seq = value[i + 1 : end]
        replacement = _escape_replacement(seq, delims)
        if replacement is None:
            out.append(ch)  # not an escape sequence we know: keep the text as sent
            i += 1
            continue
        out.append(replacement)
        i = end + 1
    return "".join(out)


def _escape_replacement(seq: str, delims: Delimiters) -> str | None:
    simple = {
        "F": delims.field,
        "S": delims.component,
        "T": delims.subcomponent,
        "R": delims.repetition,
        "E": delims.escape,
        ".br": "\n",
        "H": "",
        "N": "",
    }
    if seq in simple:
        return simple[seq]
    if seq[:1] == "X" and len(seq) > 1 and len(seq) % 2 == 1:
        try:
            return bytes.fromhex(seq[1:]).decode("utf-8", errors="replace")
        except ValueError:
            return None
    return None


def escape(value: str, delims: Delimiters) -> str:
    """The inverse of :func:`unescape` for the delimiter characters and line breaks."""
    esc = delims.escape
    out = value.replace(esc, f"{esc}E{esc}")
    for char, code in (
        (delims.field, "F"),
        (delims.component, "S"),
        (delims.subcomponent, "T"),
        (delims.repetition, "R"),
    ):
        out = out.replace(char, f"{esc}{code}{esc}")
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{esc}.br{esc}")
