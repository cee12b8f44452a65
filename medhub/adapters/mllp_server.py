"""The asyncio MLLP listener: frames in, handler, ACK frames out.

Per connection it reads bytes, feeds the sans-I/O decoder, hands each complete
message to the handler (run in a worker thread, because storing is blocking
database I/O) and writes the ACK the handler returns. Messages on one
connection are processed in order, one at a time, which is the back-pressure:
while a message is being stored nothing more is read from that socket.

Nothing a peer sends can stop the listener: junk between frames is logged,
an oversize frame is answered AR (with its MSH-10 where readable), an idle
connection is closed after the timeout, and a connection closed mid-frame is
logged with the number of bytes lost (the sender has no ACK, so it resends).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from medhub.errors import Hl7Location, Issue, MessageParseError
from medhub.hl7.inbound import InboundOutcome
from medhub.hl7.mllp_framing import FramingProblem, MllpDecoder, encode_frame

log = structlog.get_logger(__name__)

MessageHandler = Callable[[bytes, str], InboundOutcome]
OversizeHandler = Callable[[bytes, MessageParseError, str], InboundOutcome]
READ_CHUNK = 64 * 1024


@dataclass
class MllpServerConfig:
    host: str = "0.0.0.0"
    port: int = 2575
    max_frame_bytes: int = 4 * 1024 * 1024
    idle_timeout_seconds: float = 300.0
    ssl_context: ssl.SSLContext | None = None


class MllpServer:
    """Serves MLLP on one port; ``start()`` binds, ``close()`` stops and waits for connections."""

    def __init__(
        self, config: MllpServerConfig, handler: MessageHandler, on_oversize: OversizeHandler
    ) -> None:
        self.config = config
        self._handler = handler
        self._on_oversize = on_oversize
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the MLLP server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            self.config.host,
            self.config.port,
            ssl=self.config.ssl_context,
            limit=READ_CHUNK,
        )
        log.info(
            "mllp.listening",
            host=self.config.host,
            port=self.port,
            tls=self.config.ssl_context is not None,
        )

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        decoder = MllpDecoder(self.config.max_frame_bytes)
        log.info("mllp.connected", peer=peer)
        try:
            await self._read_loop(reader, writer, decoder, peer)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.warning(
                "mllp.connection_lost", peer=peer, error=str(exc), bytes_lost=decoder.pending_bytes
            )
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("mllp.connection_failed", peer=peer)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_loop(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: MllpDecoder,
        peer: str,
    ) -> None:
        while True:
            try:
                data = await asyncio.wait_for(
                    reader.read(READ_CHUNK), self.config.idle_timeout_seconds
                )
            except TimeoutError:
                log.info("mllp.idle_timeout", peer=peer, bytes_lost=decoder.pending_bytes)
                return
            if not data:
                if decoder.pending_bytes or decoder.in_frame:
                    log.warning(
                        "mllp.closed_mid_frame", peer=peer, bytes_lost=decoder.pending_bytes
                    )
                else:
                    log.info("mllp.disconnected", peer=peer)
                return
            for item in decoder.feed(data):
                outcome = await self._outcome(item, peer)
                if outcome is not None and outcome.ack is not None:
                    writer.write(encode_frame(outcome.ack))
                    await writer.drain()

    async def _outcome(self, item: bytes | FramingProblem, peer: str) -> InboundOutcome | None:
        if isinstance(item, bytes):
            return await asyncio.to_thread(self._handler, item, peer)
        if item.kind == "junk":
            log.warning("mllp.junk_between_frames", peer=peer, bytes=item.size)
            return None
        text = (
            f"message of {item.size} bytes exceeds the maximum frame size of "
            f"{self.config.max_frame_bytes} bytes"
        )
        log.warning("mllp.oversize_frame", peer=peer, bytes=item.size)
        error = MessageParseError(
            text, [Issue(text, code="too-long", location=Hl7Location("MSH", 1), hl7_error_code=207)]
        )
        return await asyncio.to_thread(self._on_oversize, item.head, error, peer)
