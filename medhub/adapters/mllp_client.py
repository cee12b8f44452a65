"""A blocking MLLP client: send messages, read each ACK (used by ``medhub hl7 send`` and tests)."""

from __future__ import annotations

import socket
from types import TracebackType

from medhub.errors import StoreUnavailableError
from medhub.hl7.mllp_framing import MllpDecoder, encode_frame


class MllpClient:
    """One MLLP connection; ``send`` writes a frame and waits for the next frame back."""

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._decoder = MllpDecoder()
        self._ready: list[bytes] = []

    def send(self, message: bytes) -> bytes:
        """Send one message (without framing) and return the ACK (without framing)."""
        self._sock.sendall(encode_frame(message))
        return self.receive()

    def receive(self) -> bytes:
        while not self._ready:
            data = self._sock.recv(65536)
            if not data:
                raise StoreUnavailableError("the MLLP peer closed the connection before an ACK")
            self._ready.extend(f for f in self._decoder.feed(data) if isinstance(f, bytes))
        return self._ready.pop(0)

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for tests of framing errors)."""
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
