"""The outbound MLLP sender against a real loopback partner: ACK handling, retries, outages."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trustme

from medhub.adapters.mllp_sender import MllpDestination, MllpSender, TlsClientOptions
from medhub.adapters.mllp_server import server_ssl_context
from medhub.errors import Issue
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.ack import build_ack, salvage_header
from medhub.hl7.er7 import decode_er7, parse_er7
from medhub.hl7.mllp_framing import MllpDecoder, encode_frame
from medhub.hl7.outbound_queue import OutboundMessage, enqueue, list_messages
from medhub.hl7.pcd01_builder import (
    Containment,
    DeviceObservation,
    HierarchicDesignator,
    PatientIdentifier,
    Pcd01Header,
    PcdPatient,
    build_pcd01_oru,
)
from tests.builders import adt


@dataclass(frozen=True)
class Reply:
    """How the test partner answers one message."""

    code: str = "AA"
    echo: str | None = None  # MSA-2 to send instead of the message's MSH-10
    error: str = ""
    silent: bool = False  # no ACK at all
    cut: bool = False  # half an ACK frame, then close the connection


Answer = Callable[[str, int], Reply]  # (MSH-10, how many times it has arrived) -> reply


def always_aa(_control_id: str, _seen: int) -> Reply:
    return Reply()


class Partner:
    """A receiving HL7 system on a loopback port, answering each message as ``answer`` says."""

    def __init__(self, answer: Answer = always_aa, ssl_context: ssl.SSLContext | None = None):
        self.answer = answer
        self.ssl_context = ssl_context
        self.received: list[str] = []
        self.client_names: list[str] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", port, ssl=self.ssl_context
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        cert = writer.get_extra_info("peercert")
        if cert:
            self.client_names.extend(name for kind, name in cert["subjectAltName"] if kind == "DNS")
        decoder = MllpDecoder()
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    if isinstance(frame, bytes) and not await self._answer(frame, writer):
                        return
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, frame: bytes, writer: asyncio.StreamWriter) -> bool:
        control_id = parse_er7(decode_er7(frame)).control_id
        self.received.append(control_id)
        reply = self.answer(control_id, self.received.count(control_id))
        if reply.silent:
            return True
        header = salvage_header(frame.decode("utf-8"))
        if reply.echo is not None:
            header = replace(header, control_id=reply.echo)
        issues = [Issue(reply.error, hl7_error_code=204)] if reply.error else []
        ack = build_ack(
            header,
            reply.code,  # type: ignore[arg-type]
            control_id=f"ACK-{len(self.received)}",
            now=datetime.now(UTC),
            issues=issues,
        )
        data = encode_frame(ack.encode())
        if reply.cut:
            writer.write(data[: len(data) // 2])
            await writer.drain()
            return False
        writer.write(data)
        await writer.drain()
        return True


def destination(port: int, **overrides: Any) -> MllpDestination:
    fast = {
        "connect_timeout_seconds": 2.0,
        "ack_timeout_seconds": 3.0,
        "max_attempts": 5,
        "retry_base_seconds": 0.02,
        "retry_max_seconds": 0.1,
        "reconnect_base_seconds": 0.02,
        "reconnect_max_seconds": 0.1,
        "poll_interval_seconds": 0.02,
    }
    return MllpDestination(name="cis", host="127.0.0.1", port=port, **{**fast, **overrides})


def queue(store: SqlResourceStore, *messages: bytes, to: str = "cis") -> None:
    with store.session() as session:
        for message in messages:
            enqueue(session, destination=to, message=message, now=datetime.now(UTC))


def state(store: SqlResourceStore) -> dict[str, OutboundMessage]:
    with store.session() as session:
        return {m.control_id: m for m in list_messages(session)}


async def until(
    store: SqlResourceStore,
    done: Callable[[dict[str, OutboundMessage]], bool],
    timeout: float = 20.0,
) -> dict[str, OutboundMessage]:
    """Poll the queue until ``done`` holds; fail with the queue's state when it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        current = await asyncio.to_thread(state, store)
        if done(current):
            return current
        if loop.time() > deadline:
            summary = {k: (m.status, m.attempts, m.last_error) for k, m in current.items()}
            raise AssertionError(f"the queue did not get there in {timeout} s: {summary}")
        await asyncio.sleep(0.02)


def all_settled(messages: dict[str, OutboundMessage]) -> bool:
    return bool(messages) and all(m.status != "pending" for m in messages.values())


def run(
    store: SqlResourceStore,
    partner: Partner,
    scenario: Callable[[int], Awaitable[None]],
    **overrides: Any,
) -> None:
    """Start the partner and a sender towards it, run ``scenario(port)``, stop both."""

    async def main() -> None:
        port = await partner.start()
        sender = MllpSender(destination(port, **overrides), store.session)
        await sender.start()
        try:
            await asyncio.wait_for(scenario(port), 60)
        finally:
            await sender.close(grace_seconds=5)
            await partner.close()

    asyncio.run(main())


def pcd01(control_id: str) -> bytes:
    patient = PcdPatient(
        (PatientIdentifier("MRN-1", HierarchicDesignator("HOSP")),), family="DOE", given="JANE"
    )
    spo2 = DeviceObservation(
        "0123456789ABCDEF",
        Containment(1, 1, 1, 1),
        "150456",
        "MDC_PULS_OXIM_SAT_O2",
        97,
        "%",
        datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
    )
    header = Pcd01Header(HierarchicDesignator("MEDHUB"), HierarchicDesignator("CIS"))
    return build_pcd01_oru(
        patient, [spo2], header=header, control_id=control_id, now=datetime.now(UTC)
    )


def test_accepted_messages_are_sent_in_order_with_their_ack_kept(
    store: SqlResourceStore,
) -> None:
    partner = Partner()
    queue(store, pcd01("V1"), adt("A1"), pcd01("V2"))

    async def scenario(_port: int) -> None:
        await until(store, all_settled)

    run(store, partner, scenario)
    assert partner.received == ["V1", "A1", "V2"]
    final = state(store)
    assert {k: (m.status, m.attempts, m.ack_code) for k, m in final.items()} == {
        "V1": ("sent", 1, "CA"),  # PCD-01 asks for enhanced mode (MSH-15 AL): commit ACK
        "A1": ("sent", 1, "AA"),
        "V2": ("sent", 1, "CA"),
    }
    ack = final["A1"].ack
    assert ack is not None and b"MSA|AA|A1" in ack
    assert final["A1"].sent_at is not None


def test_a_refused_message_is_parked_with_the_reason_and_the_next_one_still_goes(
    store: SqlResourceStore,
) -> None:
    def answer(control_id: str, _seen: int) -> Reply:
        if control_id == "BAD":
            return Reply("AE", error="PID-3 patient MRN-1 is unknown here")
        return Reply()

    partner = Partner(answer)
    queue(store, adt("G1"), adt("BAD"), adt("G2"))

    async def scenario(_port: int) -> None:
        await until(store, all_settled)

    run(store, partner, scenario)
    assert partner.received == ["G1", "BAD", "G2"], "the refused message was sent again"
    final = state(store)
    assert [final[k].status for k in ("G1", "BAD", "G2")] == ["sent", "parked", "sent"]
    reason = final["BAD"].last_error
    assert reason is not None and "PID-3 patient MRN-1 is unknown here" in reason
    assert final["BAD"].ack_code == "AE"


def test_a_rejected_message_is_retried_then_parked_and_holds_the_queue_meanwhile(
    store: SqlResourceStore,
) -> None:
    def answer(control_id: str, _seen: int) -> Reply:
        return Reply("AR", error="try later") if control_id == "R1" else Reply()

    partner = Partner(answer)
    queue(store, adt("R1"), adt("R2"))

    async def scenario(_port: int) -> None:
        await until(store, all_settled)

    run(store, partner, scenario, max_attempts=3)
    assert partner.received == ["R1", "R1", "R1", "R2"]
    final = state(store)
    assert (final["R1"].status, final["R1"].attempts) == ("parked", 3)
    assert final["R1"].last_error == (
        "gave up after 3 attempts; last: AR: try later; 204 Unknown key identifier"
    )
    assert final["R2"].status == "sent"


def test_an_ack_naming_another_message_is_not_counted_as_sent(store: SqlResourceStore) -> None:
    def answer(control_id: str, seen: int) -> Reply:
        if control_id == "W1":
            return Reply("AA", echo="SOMEONE-ELSE")
        if control_id == "W2" and seen == 1:
            return Reply("AA", echo="W1")
        return Reply()

    partner = Partner(answer)
    queue(store, adt("W1"), adt("W2"))

    async def scenario(_port: int) -> None:
        await until(store, all_settled)

    run(store, partner, scenario, max_attempts=2)
    final = state(store)
    assert final["W1"].status == "parked", "an AA for another message was taken as success"
    assert final["W1"].sent_at is None
    reason = final["W1"].last_error
    assert reason is not None and "'SOMEONE-ELSE' does not echo our MSH-10 'W1'" in reason
    assert (final["W2"].status, final["W2"].attempts) == ("sent", 2)
    assert partner.received == ["W1", "W1", "W2", "W2"]


def test_a_partner_that_is_down_at_first_gets_the_messages_once_it_is_up(
    store: SqlResourceStore,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    queue(store, adt("D1"), adt("D2"))
    partner = Partner()

    async def main() -> None:
        sender = MllpSender(destination(port), store.session)
        await sender.start()
        try:
            waiting = await until(store, lambda m: bool(m["D1"].last_error))
            assert "cannot connect" in (waiting["D1"].last_error or "")
            assert waiting["D1"].attempts == 0, "an outage used up the message's attempts"
            await partner.start(port)
            await until(store, all_settled)
        finally:
            await sender.close(grace_seconds=5)
            await partner.close()

    asyncio.run(asyncio.wait_for(main(), 60))
    assert partner.received == ["D1", "D2"]
    final = state(store)
    assert [(final[k].status, final[k].attempts) for k in ("D1", "D2")] == [
        ("sent", 1),
        ("sent", 1),
    ]


def test_a_connection_dropped_mid_ack_is_retried_and_nothing_is_lost(
    store: SqlResourceStore,
) -> None:
    def answer(control_id: str, seen: int) -> Reply:
        return Reply(cut=True) if control_id == "X1" and seen <= 2 else Reply()

    partner = Partner(answer)
    queue(store, adt("X1"), adt("X2"))

    async def scenario(_port: int) -> None:
        await until(store, all_settled)

    run(store, partner, scenario)
    final = state(store)
    assert (final["X1"].status, final["X1"].attempts) == ("sent", 3)
    assert "connection lost" in (final["X1"].last_error or "")
    assert final["X2"].status == "sent"
    assert partner.received == ["X1", "X1", "X1", "X2"]


def test_no_ack_within_the_timeout_is_retried_on_a_new_connection(
    store: SqlResourceStore,
) -> None:
    def answer(control_id: str, seen: int) -> Reply:
        return Reply(silent=True) if control_id == "S1" and seen == 1 else Reply()

    partner = Partner(answer)
    queue(store, adt("S1"), adt("S2"))

    async def scenario(_port: int) -> None:
        await until(store, all_settled)

    run(store, partner, scenario, ack_timeout_seconds=0.3)
    final = state(store)
    assert (final["S1"].status, final["S1"].attempts) == ("sent", 2)
    assert final["S1"].last_error == "no ACK within 0.3 s"
    assert partner.received == ["S1", "S1", "S2"]


def test_mutual_tls_delivers_with_the_client_certificate(
    store: SqlResourceStore, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("medhub.example").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "client.pem")
    )
    context = server_ssl_context(
        str(tmp_path / "server.pem"), str(tmp_path / "server.key"), str(tmp_path / "ca.pem")
    )
    partner = Partner(ssl_context=context)
    queue(store, adt("T1"))
    tls = TlsClientOptions(ca_file=str(tmp_path / "ca.pem"), cert_file=str(tmp_path / "client.pem"))

    async def scenario(_port: int) -> None:
        await until(store, all_settled)

    run(store, partner, scenario, tls=tls)
    assert state(store)["T1"].status == "sent"
    assert partner.received == ["T1"]
    assert partner.client_names == ["medhub.example"]


def test_close_returns_promptly_when_idle(store: SqlResourceStore) -> None:
    async def main() -> None:
        partner = Partner()
        port = await partner.start()
        sender = MllpSender(destination(port, poll_interval_seconds=30.0), store.session)
        await sender.start()
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sender.close()
        assert loop.time() - started < 2.0
        with contextlib.suppress(Exception):
            await partner.close()

    asyncio.run(asyncio.wait_for(main(), 30))
