"""HL7 message counts and ACK latency, through the real MLLP listener and sender on loopback."""

from __future__ import annotations

from medhub.adapters.mllp_server import MllpServer
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.mllp_framing import encode_frame
from tests.adapters.test_mllp_sender import Partner, Reply, all_settled, queue, run, until
from tests.adapters.test_mllp_server import Peer, run_with_server
from tests.builders import adt
from tests.scrape import Delta, current

MESSAGES = "medhub_hl7_messages_total"
ACK_COUNT = "medhub_hl7_ack_seconds_count"


def test_inbound_messages_count_by_status_and_each_ack_is_timed(
    sqlite_store: SqlResourceStore,
) -> None:
    delta = Delta()

    async def scenario(server: MllpServer) -> None:
        peer = await Peer.connect(server)
        for control_id in ("M1", "M2"):
            await peer.send(encode_frame(adt(control_id, mrn=f"MRN-{control_id}")))
            assert (await peer.ack())["MSA"][1] == "AA"
        await peer.send(encode_frame(adt("M1", mrn="MRN-M1")))  # a resend
        assert (await peer.ack())["MSA"][1] == "AA"
        await peer.send(encode_frame(adt("BIG") + b"NTE|1||" + b"x" * 5000 + b"\r"))
        assert (await peer.ack())["MSA"][1] == "AR"
        await peer.close()

    run_with_server(sqlite_store, scenario, max_frame_bytes=2000)
    after = current()
    inbound = {"direction": "in", "interface": "mllp"}
    assert delta(MESSAGES, after, **inbound, status="accepted") == 2
    assert delta(MESSAGES, after, **inbound, status="duplicate") == 1
    assert delta(MESSAGES, after, **inbound, status="rejected") == 1
    assert delta(ACK_COUNT, after, **inbound) == 4
    assert delta("medhub_hl7_ack_seconds_sum", after, **inbound) > 0
    # ACKs took less than the 30 s bucket's bound: the AA came after the commit, not a timeout
    assert delta("medhub_hl7_ack_seconds_bucket", after, **inbound, le="30.0") == 4


def test_outbound_exchanges_count_as_sent_retry_or_parked_per_destination(
    sqlite_store: SqlResourceStore,
) -> None:
    def answer(control_id: str, seen: int) -> Reply:
        if control_id == "O2":
            return Reply("AE", error="unknown patient")
        return Reply("AR") if (control_id, seen) == ("O3", 1) else Reply()

    partner = Partner(answer)
    queue(sqlite_store, adt("O1"), adt("O2"), adt("O3"))
    delta = Delta()

    async def scenario(_port: int) -> None:
        await until(sqlite_store, all_settled)

    run(sqlite_store, partner, scenario)
    after = current()
    outbound = {"direction": "out", "interface": "cis"}
    assert delta(MESSAGES, after, **outbound, status="sent") == 2
    assert delta(MESSAGES, after, **outbound, status="parked") == 1
    assert delta(MESSAGES, after, **outbound, status="retry") == 1
    assert delta(ACK_COUNT, after, **outbound) == 4  # every exchange got an answer
