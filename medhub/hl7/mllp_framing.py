"""A sans-I/O MLLP decoder and encoder (HL7 v2.5.1 Appendix C, MLLP release 2).

A frame is ``<VT> message <FS><CR>`` (0x0B ... 0x1C 0x0D). The decoder takes
bytes in whatever pieces the network delivers (``feed`` copes with any split,
including between FS and CR) and returns complete messages and framing
problems; it never touches a socket, so it is tested with random splits.

Problems are reported, not raised, so the transport can answer or log them and
keep the connection: bytes outside a frame (``junk``), a frame larger than the
limit (``oversize``; its first bytes are kept so the ACK can echo MSH-10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

START_BLOCK: Final = b"\x0b"
END_BLOCK: Final = b"\x1c"
CARRIAGE_RETURN: Final = b"\x0d"
HEAD_KEPT: Final = 4096


@dataclass(frozen=True, slots=True)
class FramingProblem:
    """Something on the wire that is not a well-formed frame."""

    kind: Literal["junk", "oversize"]
    size: int
    head: bytes = b""


def encode_frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP frame."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class MllpDecoder:
    """Incremental MLLP decoder: ``feed(data) -> [message bytes | FramingProblem, ...]``."""

    def __init__(self, max_frame_bytes: int = 4 * 1024 * 1024) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._inside = False
        self._skipping = 0  # > 0: inside an oversize frame, counting discarded bytes
        self._junk = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished frame (lost if the connection closes now)."""
        return self._skipping or len(self._buffer)

    @property
    def in_frame(self) -> bool:
        return self._inside

    def feed(self, data: bytes) -> list[bytes | FramingProblem]:
        out: list[bytes | FramingProblem] = []
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if not self._inside:
                start = data.find(START_BLOCK, pos)
                if start == -1:
                    self._junk += _count_junk(data[pos:])
                    break
                self._junk += _count_junk(data[pos:start])
                if self._junk:
                    out.append(FramingProblem("junk", self._junk))
                    self._junk = 0
                self._inside = True
                pos = start + 1
                continue
            end = data.find(END_BLOCK, pos)
            chunk_end = len(data) if end == -1 else end
            self._take(view[pos:chunk_end])
            if end == -1:
                break
            pos = end + 1
            if pos < len(data) and data[pos : pos + 1] == CARRIAGE_RETURN:
                pos += 1
            out.append(self._finish())
        return out

    def _take(self, chunk: memoryview) -> None:
        if self._skipping:
            self._skipping += len(chunk)
            return
        if len(self._buffer) + len(chunk) > self.max_frame_bytes:
            self._skipping = len(self._buffer) + len(chunk)
            del self._buffer[HEAD_KEPT:]
            if len(self._buffer) < HEAD_KEPT:
                self._buffer += chunk[: HEAD_KEPT - len(self._buffer)]
            return
        self._buffer += chunk

    def _finish(self) -> bytes | FramingProblem:
        self._inside = False
        if self._skipping:
            problem = FramingProblem("oversize", self._skipping, bytes(self._buffer))
            self._skipping = 0
            self._buffer.clear()
            return problem
        message = bytes(self._buffer)
        self._buffer.clear()
        return message


def _count_junk(data: bytes) -> int:
    """Bytes between frames that are not whitespace (CR/LF between frames is tolerated)."""
    return len(data.strip(b"\r\n\t \x00" + CARRIAGE_RETURN))
