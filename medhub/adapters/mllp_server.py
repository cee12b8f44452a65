"""The asyncio MLLP listener: frames in, ACK frames out, optionally over TLS / mutual TLS.

Per connection it reads bytes, feeds the sans-I/O decoder and hands the
complete messages of each read, as one ordered group, to the handler (the
group committer, which stores them together with other connections' messages
in one transaction), then writes the ACKs in order. A connection's next group
is not submitted before its previous one is answered, which is the
back-pressure: a sender that outruns the database waits in TCP.

Nothing a peer sends can stop the listener: junk between frames is logged, an
oversize frame is answered AR (with its MSH-10 where readable), an idle
connection is closed after the timeout, a connection closed mid-frame is
logged with the bytes lost (the sender has no ACK for it, so it resends), a
failed TLS handshake is logged, and a crash while handling one connection
closes that connection only.

Each answered message counts in ``medhub_hl7_messages_total{direction="in"}``
by its status, and its ACK latency (the frame's last byte read to its ACK
written, the group commit inside) in ``medhub_hl7_ack_seconds``: per group,
with label children bound once per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import get_args

import structlog

from medhub.errors import Hl7Location, Issue, MessageParseError
from medhub.hl7.inbound import InboundOutcome
from medhub.hl7.message_log import Status
from medhub.hl7.mllp_framing import FramingProblem, MllpDecoder, encode_frame
from medhub.metrics import HL7_ACK_SECONDS, HL7_MESSAGES

log = structlog.get_logger(__name__)

GroupHandler = Callable[[list[tuple[bytes, str]]], Awaitable[list[InboundOutcome]]]
OversizeHandler = Callable[[bytes, MessageParseError, str], InboundOutcome]
READ_CHUNK = 64 * 1024


@dataclass
class MllpServerConfig:
    host: str = "0.0.0.0"
    port: int = 2575
    max_frame_bytes: int = 4 * 1024 * 1024
    idle_timeout_seconds: float = 300.0
    ssl_context: ssl.SSLContext | None = None
    #: Let several ``medhub serve --role mllp`` processes on one host share the port
    #: (SO_REUSEPORT: the kernel spreads new connections over them). Off by default so
    #: a second medhub started by mistake fails to bind instead of taking half the traffic.
    reuse_port: bool = False


class MllpServer:
    """Serves MLLP on one port; ``start()`` binds, ``close()`` stops and waits for connections."""

    def __init__(
        self,
        config: MllpServerConfig,
        handler: GroupHandler,
        on_oversize: OversizeHandler,
        *,
        interface: str = "mllp",
    ) -> None:
        """``interface``: the ``interface`` label of this listener's metrics."""
        self.config = config
        self._handler = handler
        self._on_oversize = on_oversize
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._counted = {
            status: HL7_MESSAGES.labels("in", interface, status) for status in get_args(Status)
        }
        self._ack_seconds = HL7_ACK_SECONDS.labels("in", interface)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the MLLP server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            self.config.host,
            self.config.port,
            ssl=self.config.ssl_context,
            limit=READ_CHUNK,
            reuse_port=self.config.reuse_port or None,
            ssl_handshake_timeout=30 if self.config.ssl_context else None,
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
        log.info("mllp.connected", peer=peer, client_cert=_client_subject(writer))
        try:
            await self._read_loop(reader, writer, decoder, peer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
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
            arrived = time.perf_counter()
            group: list[tuple[bytes, str]] = []
            for item in decoder.feed(data):
                if isinstance(item, bytes):
                    group.append((item, peer))
                    continue
                await self._answer_group(group, writer, arrived)
                group = []
                outcome = await self._problem(item, peer)
                if outcome is not None:
                    if outcome.ack is not None:
                        writer.write(encode_frame(outcome.ack))
                    self._account([outcome], arrived)
            await self._answer_group(group, writer, arrived)
            await writer.drain()

    async def _answer_group(
        self, group: list[tuple[bytes, str]], writer: asyncio.StreamWriter, arrived: float
    ) -> None:
        if not group:
            return
        outcomes = await self._handler(group)
        for outcome in outcomes:
            if outcome.ack is not None:
                writer.write(encode_frame(outcome.ack))
        self._account(outcomes, arrived)

    def _account(self, outcomes: Sequence[InboundOutcome], arrived: float) -> None:
        """Count the outcomes by status and time their ACKs (one clock read per group)."""
        elapsed = time.perf_counter() - arrived
        for outcome in outcomes:
            self._counted[outcome.status].inc()
            if outcome.ack is not None:
                self._ack_seconds.observe(elapsed)

    async def _problem(self, item: FramingProblem, peer: str) -> InboundOutcome | None:
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


def _client_subject(writer: asyncio.StreamWriter) -> str | None:
    """The client certificate's subject CN under mutual TLS (for the log), else None."""
    cert = writer.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def server_ssl_context(
    cert_file: str,
    key_file: str,
    client_ca_file: str | None = None,
) -> ssl.SSLContext:
    """TLS 1.2+ server context; with ``client_ca_file`` clients must present a certificate
    signed by that CA (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
