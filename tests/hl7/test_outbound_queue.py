"""The outbound HL7 queue on SQLite, PostgreSQL and MariaDB: FIFO per destination, leases,
park and resend, and claims under concurrency."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy.orm import Session

from medhub.errors import ConflictError, MessageParseError, NotFoundError
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.outbound_policy import RetryPolicy
from medhub.hl7.outbound_queue import (
    OutboundMessage,
    claim_next,
    enqueue,
    get_message,
    list_messages,
    mark_sent,
    next_due,
    park,
    record_failure,
    resend,
    retry_later,
)
from tests.builders import adt

T = TypeVar("T")
NOW = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


def tx(store: SqlResourceStore, work: Callable[[Session], T]) -> T:
    with store.session() as session:
        return work(session)


def put(store: SqlResourceStore, destination: str, *control_ids: str) -> list[int]:
    with store.session() as session:
        return [
            enqueue(session, destination=destination, message=adt(cid), now=NOW)
            for cid in control_ids
        ]


def claim(store: SqlResourceStore, destination: str, now: datetime = NOW) -> OutboundMessage | None:
    return tx(store, lambda s: claim_next(s, destination=destination, now=now, lease=LEASE))


def sent(store: SqlResourceStore, message: OutboundMessage) -> None:
    tx(store, lambda s: mark_sent(s, message.id, now=NOW, ack_code="AA", ack=b"MSA|AA|x"))


def test_a_destination_is_served_oldest_first_one_at_a_time(store: SqlResourceStore) -> None:
    put(store, "lab", "L1", "L2", "L3")
    first = claim(store, "lab")
    assert first is not None
    assert (first.control_id, first.attempts, first.status) == ("L1", 1, "pending")
    assert first.message == adt("L1")
    assert claim(store, "lab") is None, "the second message went while the first was in flight"
    sent(store, first)
    second = claim(store, "lab")
    assert second is not None and second.control_id == "L2"
    stored = tx(store, lambda s: get_message(s, first.id))
    assert (stored.status, stored.ack_code, stored.sent_at) == ("sent", "AA", NOW)
    assert stored.ack == b"MSA|AA|x"


def test_a_message_waiting_for_its_retry_holds_back_the_ones_behind_it(
    store: SqlResourceStore,
) -> None:
    put(store, "lab", "L1", "L2")
    first = claim(store, "lab")
    assert first is not None
    later = NOW + timedelta(seconds=30)
    tx(store, lambda s: retry_later(s, first.id, reason="AR: busy", at=later, ack_code="AR"))
    assert claim(store, "lab", NOW + timedelta(seconds=29)) is None
    assert tx(store, lambda s: next_due(s, destination="lab", now=NOW)) is None
    again = claim(store, "lab", later)
    assert again is not None
    assert (again.control_id, again.attempts, again.last_error) == ("L1", 2, "AR: busy")


def test_an_expired_lease_lets_the_message_be_claimed_again(store: SqlResourceStore) -> None:
    """A sender that died mid-exchange does not strand its message."""
    put(store, "lab", "L1")
    assert claim(store, "lab") is not None
    assert claim(store, "lab", NOW + LEASE - timedelta(seconds=1)) is None
    again = claim(store, "lab", NOW + LEASE)
    assert again is not None and again.attempts == 2


def test_two_destinations_do_not_wait_for_each_other(store: SqlResourceStore) -> None:
    put(store, "lab", "L1", "L2")
    put(store, "pharmacy", "P1", "P2")
    lab = claim(store, "lab")
    assert lab is not None
    tx(store, lambda s: retry_later(s, lab.id, reason="down", at=NOW + timedelta(hours=1)))
    pharmacy = claim(store, "pharmacy")
    assert pharmacy is not None and pharmacy.control_id == "P1"
    sent(store, pharmacy)
    following = claim(store, "pharmacy")
    assert following is not None and following.control_id == "P2"
    assert claim(store, "lab") is None
    assert claim(store, "nowhere") is None


def test_a_parked_message_lets_the_queue_move_and_resend_puts_it_back_first(
    store: SqlResourceStore,
) -> None:
    put(store, "lab", "L1", "L2", "L3")
    poison = claim(store, "lab")
    assert poison is not None
    tx(store, lambda s: park(s, poison.id, reason="AE: PID-3 unknown", ack_code="AE", ack=b"x"))
    second = claim(store, "lab")
    assert second is not None and second.control_id == "L2"
    sent(store, second)

    parked = tx(store, lambda s: list_messages(s, destination="lab", status="parked"))
    assert [(m.control_id, m.last_error, m.ack_code) for m in parked] == [
        ("L1", "AE: PID-3 unknown", "AE")
    ]
    back = tx(store, lambda s: resend(s, poison.id, now=NOW))
    assert (back.status, back.attempts, back.ack_code, back.ack) == ("pending", 0, None, None)
    again = claim(store, "lab")
    assert again is not None and (again.control_id, again.attempts) == ("L1", 1)
    sent(store, again)
    last = claim(store, "lab")
    assert last is not None and last.control_id == "L3"


def test_only_parked_messages_can_be_resent(store: SqlResourceStore) -> None:
    [message_id] = put(store, "lab", "L1")
    with pytest.raises(ConflictError):
        tx(store, lambda s: resend(s, message_id, now=NOW))
    with pytest.raises(NotFoundError):
        tx(store, lambda s: resend(s, message_id + 1000, now=NOW))


def test_failures_use_up_attempts_then_park(store: SqlResourceStore) -> None:
    put(store, "lab", "L1", "L2")
    policy = RetryPolicy(max_attempts=2, base_delay_seconds=10.0, max_delay_seconds=10.0)

    def fail(message: OutboundMessage) -> str:
        return tx(
            store,
            lambda s: record_failure(
                s, message.id, reason="no ACK within 30 s", now=NOW, policy=policy, jitter=1.0
            ),
        )

    first = claim(store, "lab")
    assert first is not None
    assert fail(first) == "pending"
    assert tx(store, lambda s: get_message(s, first.id)).next_attempt_at == NOW + timedelta(
        seconds=10
    )
    second = claim(store, "lab", NOW + timedelta(seconds=10))
    assert second is not None and second.attempts == 2
    assert fail(second) == "parked"
    stored = tx(store, lambda s: get_message(s, first.id))
    assert stored.status == "parked"
    assert stored.last_error == "gave up after 2 attempts; last: no ACK within 30 s"
    following = claim(store, "lab", NOW + timedelta(seconds=10))
    assert following is not None and following.control_id == "L2"


def test_recording_an_outcome_for_a_message_no_longer_pending_is_refused(
    store: SqlResourceStore,
) -> None:
    put(store, "lab", "L1")
    message = claim(store, "lab")
    assert message is not None
    sent(store, message)
    with pytest.raises(ConflictError):
        sent(store, message)
    with pytest.raises(NotFoundError):
        tx(store, lambda s: park(s, message.id + 1000, reason="x"))


def test_enqueue_belongs_to_the_callers_transaction(store: SqlResourceStore) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), store.session() as session:
        enqueue(session, destination="lab", message=adt("L1"), now=NOW)
        raise Abort
    assert tx(store, lambda s: list_messages(s)) == []


def test_a_reused_control_id_is_refused_without_spoiling_the_transaction(
    store: SqlResourceStore,
) -> None:
    put(store, "lab", "L1")
    with store.session() as session:
        with pytest.raises(ConflictError, match="already queued"):
            enqueue(session, destination="lab", message=adt("L1"), now=NOW)
        enqueue(session, destination="lab", message=adt("L2"), now=NOW)
        enqueue(session, destination="pharmacy", message=adt("L1"), now=NOW)
    listed = tx(store, lambda s: list_messages(s))
    assert [(m.destination, m.control_id) for m in listed] == [
        ("lab", "L1"),
        ("lab", "L2"),
        ("pharmacy", "L1"),
    ]


def test_a_malformed_message_is_refused_at_enqueue(store: SqlResourceStore) -> None:
    with pytest.raises(MessageParseError), store.session() as session:
        enqueue(session, destination="lab", message=b"PID|1||X\r", now=NOW)


def test_list_filters_and_pages(store: SqlResourceStore) -> None:
    put(store, "lab", "L1", "L2", "L3")
    put(store, "pharmacy", "P1")
    first = claim(store, "lab")
    assert first is not None
    sent(store, first)
    pending = tx(store, lambda s: list_messages(s, status="pending"))
    assert [m.control_id for m in pending] == ["L2", "L3", "P1"]
    page = tx(store, lambda s: list_messages(s, destination="lab", limit=2))
    assert [m.control_id for m in page] == ["L1", "L2"]
    rest = tx(store, lambda s: list_messages(s, destination="lab", after_id=page[-1].id))
    assert [m.control_id for m in rest] == ["L3"]


def test_a_head_held_by_another_worker_is_not_skipped_for_the_next_message(
    store: SqlResourceStore,
) -> None:
    """SKIP LOCKED must not hand out message 2 while message 1 is being claimed."""
    put(store, "lab", "L1", "L2")
    locked = threading.Event()

    def hold_claim() -> OutboundMessage | None:
        with store.session() as session:
            claimed = claim_next(session, destination="lab", now=NOW, lease=LEASE)
            locked.set()
            threading.Event().wait(0.5)  # keep the row locked, transaction open
            return claimed

    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(hold_claim)
        assert locked.wait(30)
        rival = claim(store, "lab")
        first = holder.result(30)
    assert first is not None and first.control_id == "L1"
    assert rival is None


def test_concurrent_workers_never_get_the_same_message(store: SqlResourceStore) -> None:
    destinations = ["lab", "pharmacy", "radiology"]
    for destination in destinations:
        put(store, destination, *(f"{destination}-{n}" for n in range(6)))
    claims: list[OutboundMessage] = []
    guard = threading.Lock()
    start = threading.Barrier(6)

    def worker(index: int) -> None:
        start.wait(30)
        idle_rounds = 0
        while idle_rounds < 50:
            destination = destinations[(index + idle_rounds) % len(destinations)]
            message = claim(store, destination)
            if message is None:
                idle_rounds += 1
                threading.Event().wait(0.005)
                continue
            with guard:
                claims.append(message)
            sent(store, message)
            idle_rounds = 0

    with ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(worker, i) for i in range(6)]:
            future.result(120)

    ids = [m.id for m in claims]
    assert len(ids) == len(set(ids)) == 18, "a message was handed out twice or not at all"
    order: dict[str, list[int]] = defaultdict(list)
    for message in claims:
        order[message.destination].append(int(message.control_id.rsplit("-", 1)[1]))
    assert order == {d: list(range(6)) for d in destinations}
    assert {m.status for m in tx(store, lambda s: list_messages(s))} == {"sent"}
