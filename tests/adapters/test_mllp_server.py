"""The MLLP listener on a real loopback socket: keep-alive, concurrency, framing errors."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from medhub.adapters.group_commit import GroupCommitter
from medhub.adapters.mllp_server import MllpServer, MllpServerConfig
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.er7 import parse_er7
from medhub.hl7.inbound import Hl7Inbound, InboundOutcome
from medhub.hl7.mllp_framing import MllpDecoder, encode_frame
from medhub.hl7.sql_units import sql_inbound_units
from tests.builders import adt

Scenario = Callable[[MllpServer], Awaitable[None]]


def run_with_server(
    store: SqlResourceStore,
    scenario: Scenario,
    *,
    workers: int = 1,
    ssl_context: ssl.SSLContext | None = None,
    **config: float,
) -> None:
    inbound = Hl7Inbound(sql_inbound_units(store), clock=lambda: datetime.now(UTC))

    async def main() -> None:
        committer = GroupCommitter(inbound.handle_batch, workers=workers)
        await committer.start()
        server = MllpServer(
            MllpServerConfig(
                host="127.0.0.1",
                port=0,
                ssl_context=ssl_context,
                **config,  # type: ignore[arg-type]
            ),
            handler=committer.submit,
            on_oversize=inbound.reject,
        )
        await server.start()
        try:
            await asyncio.wait_for(scenario(server), 60)
        finally:
            await server.close()
            await committer.close()

    asyncio.run(main())


class Peer:
    """A test MLLP client on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = MllpDecoder()
        self.ready: list[bytes] = []

    @classmethod
    async def connect(cls, server: MllpServer) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ack(self) -> dict[str, list[str]]:
        while not self.ready:
            data = await asyncio.wait_for(self.reader.read(65536), 20)
            assert data, "the server closed the connection instead of answering"
            self.ready.extend(f for f in self.decoder.feed(data) if isinstance(f, bytes))
        message = parse_er7(self.ready.pop(0).decode())
        return {s.name: s.fields for s in message.segments}

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def count_patients(store: SqlResourceStore) -> int:
    with store.unit_of_work() as resources:
        return resources.search(parse_search("Patient", [])).total


def test_many_messages_on_one_connection_are_acked_in_order(
    sqlite_store: SqlResourceStore,
) -> None:
    async def scenario(server: MllpServer) -> None:
        peer = await Peer.connect(server)
        for n in range(20):
            await peer.send(encode_frame(adt(f"K{n}", mrn=f"M{n}")))
        for n in range(20):
            assert (await peer.ack())["MSA"][1:3] == ["AA", f"K{n}"]
        await peer.close()

    run_with_server(sqlite_store, scenario)
    assert count_patients(sqlite_store) == 20


def test_concurrent_connections_are_all_served(store: SqlResourceStore) -> None:
    async def one(server: MllpServer, c: int) -> None:
        peer = await Peer.connect(server)
        for n in range(5):
            await peer.send(encode_frame(adt(f"C{c}-{n}", mrn=f"M{c}-{n}")))
            assert (await peer.ack())["MSA"][1] == "AA"
        await peer.close()

    async def scenario(server: MllpServer) -> None:
        await asyncio.gather(*(one(server, c) for c in range(8)))

    run_with_server(store, scenario)
    assert count_patients(store) == 40


def test_junk_and_oversize_frames_are_answered_and_the_connection_goes_on(
    sqlite_store: SqlResourceStore,
) -> None:
    async def scenario(server: MllpServer) -> None:
        peer = await Peer.connect(server)
        await peer.send(b"GET / HTTP/1.1\r\n\r\n" + encode_frame(adt("J1")))
        assert (await peer.ack())["MSA"][1:3] == ["AA", "J1"]
        big = adt("BIG1") + b"NTE|1||" + b"x" * 5000 + b"\r"
        await peer.send(encode_frame(big))
        refused = await peer.ack()
        assert refused["MSA"][1:3] == ["AR", "BIG1"]
        assert "exceeds the maximum frame size" in refused["ERR"][8]
        await peer.send(encode_frame(adt("J2", mrn="MRN-2")))
        assert (await peer.ack())["MSA"][1:3] == ["AA", "J2"]
        await peer.close()

    run_with_server(sqlite_store, scenario, max_frame_bytes=2000)
    assert count_patients(sqlite_store) == 2


def test_a_connection_closed_mid_frame_stores_nothing_and_the_listener_serves_on(
    sqlite_store: SqlResourceStore,
) -> None:
    async def scenario(server: MllpServer) -> None:
        peer = await Peer.connect(server)
        await peer.send(b"\x0b" + adt("T1")[:60])
        await peer.close()
        await asyncio.sleep(0.1)
        peer = await Peer.connect(server)
        await peer.send(encode_frame(adt("T2")))
        assert (await peer.ack())["MSA"][1:3] == ["AA", "T2"]
        await peer.close()

    run_with_server(sqlite_store, scenario)
    assert count_patients(sqlite_store) == 1


def test_an_idle_connection_is_closed(sqlite_store: SqlResourceStore) -> None:
    async def scenario(server: MllpServer) -> None:
        peer = await Peer.connect(server)
        data = await asyncio.wait_for(peer.reader.read(100), 5)
        assert data == b""  # closed by the server after the idle timeout
        await peer.close()

    run_with_server(sqlite_store, scenario, idle_timeout_seconds=0.3)


def test_a_failing_handler_closes_only_that_connection() -> None:
    calls: list[bytes] = []

    async def handler(group: list[tuple[bytes, str]]) -> list[InboundOutcome]:
        raw = group[0][0]
        calls.append(raw)
        if raw.startswith(b"BOOM"):
            raise RuntimeError("bug in a handler")
        ack = b"MSH|^~\\&|||||||ACK|1|P|2.5.1\rMSA|AA|1\r"
        return [InboundOutcome("accepted", "AA", ack)]

    async def main() -> None:
        server = MllpServer(
            MllpServerConfig(host="127.0.0.1", port=0),
            handler=handler,
            on_oversize=lambda _h, _e, _p: InboundOutcome("rejected", "AR", None),
        )
        await server.start()
        try:
            bad = await Peer.connect(server)
            await bad.send(encode_frame(b"BOOM"))
            assert await asyncio.wait_for(bad.reader.read(100), 5) == b""
            await bad.close()
            good = await Peer.connect(server)
            await good.send(encode_frame(b"MSH|ok"))
            assert (await good.ack())["MSA"][1] == "AA"
            await good.close()
        finally:
            await server.close()

    asyncio.run(main())
    assert calls == [b"BOOM", b"MSH|ok"]


def test_pipelined_messages_from_many_senders_keep_each_senders_order(
    store: SqlResourceStore,
) -> None:
    """A01 then A08 for one patient, pipelined by 6 senders at once, 2 commit workers:
    every patient ends at the A08's name, so no sender's messages were reordered."""

    async def sender(server: MllpServer, c: int) -> None:
        peer = await Peer.connect(server)
        frames = b""
        for n in range(10):
            mrn = f"S{c}-{n}"
            frames += encode_frame(adt(f"{mrn}-1", mrn=mrn, family="FIRST"))
            frames += encode_frame(adt(f"{mrn}-2", mrn=mrn, event="A08", family="SECOND"))
        await peer.send(frames)
        for _ in range(20):
            assert (await peer.ack())["MSA"][1] == "AA"
        await peer.close()

    async def scenario(server: MllpServer) -> None:
        await asyncio.gather(*(sender(server, c) for c in range(6)))

    run_with_server(store, scenario, workers=2)
    with store.unit_of_work() as resources:
        result = resources.search(parse_search("Patient", [("_count", "100")]))
    assert result.total == 60
    assert {p.resource["name"][0]["family"] for p in result.resources} == {"SECOND"}
