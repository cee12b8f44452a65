"""HL7 v2 batch files (HL7 v2.5.1 §2.10.3): FHS/BHS ... messages ... BTS/FTS.

A batch file wraps messages in file and batch header/trailer segments; BTS-1
and FTS-1 carry the number of messages and batches. The splitter returns the
messages and checks those counts, because a count that does not match means
messages were lost or added on the way, and that must not pass silently.
Plain files with one or more messages (no FHS/BHS) are accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medhub.errors import Hl7Location, Issue, MessageParseError

_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


@dataclass(slots=True)
class Batch:
    """The messages of a file, and what its trailers declared."""

    messages: list[bytes] = field(default_factory=list)
    declared_messages: int | None = None
    batches: int = 0


def _count(segment: bytes, name: str) -> int | None:
    fields = segment.split(segment[3:4]) if len(segment) > 3 else []
    if len(fields) < 2 or not fields[1].strip():
        return None
    try:
        return int(fields[1].strip())
    except ValueError as exc:
        text = f"{name}-1 {fields[1][:20]!r} is not a message count"
        raise MessageParseError(text, [Issue(text, location=Hl7Location(name, 1, 1))]) from exc


def split_batch(data: bytes) -> Batch:
    """Split a file into messages (segment ends normalised to CR) and check BTS-1 counts."""
    text = data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    batch = Batch()
    declared = 0
    seen_trailer = False
    for segment in text.split(b"\r"):
        if not segment.strip():
            continue
        name = segment[:3]
        if name in _ENVELOPE:
            if name == b"BHS":
                batch.batches += 1
            if name == b"BTS":
                count = _count(segment, "BTS")
                if count is not None:
                    declared += count
                    seen_trailer = True
            continue
        if name == b"MSH" or not batch.messages:
            batch.messages.append(segment + b"\r")
        else:
            batch.messages[-1] += segment + b"\r"
    if seen_trailer:
        batch.declared_messages = declared
        if declared != len(batch.messages):
            text_ = (
                f"the batch trailer (BTS-1) declares {declared} messages but the file holds "
                f"{len(batch.messages)}"
            )
            raise MessageParseError(text_, [Issue(text_, location=Hl7Location("BTS", 1, 1))])
    return batch
