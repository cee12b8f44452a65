"""The acknowledged-alarm latch, pure: held ENDs, swallowed re-STARTs, releases on time."""

from __future__ import annotations

from medhub.cds.ack_latch import AckLatch
from medhub.cds.alarm_codes import Condition, Priority, Transition
from medhub.cds.detector import AlarmEvent, StreamKey

SECOND = 1_000_000
KEY = StreamKey("oxygen-saturation", "mon-1", "", "p-1")


def event(
    transition: Transition,
    second: int,
    *,
    acknowledged: bool = False,
    condition: Condition = Condition.LOW,
    stream: int = 0,
) -> AlarmEvent:
    return AlarmEvent(
        stream,
        KEY,
        condition,
        transition,
        Priority.MEDIUM,
        second * SECOND,
        88.0,
        90.0,
        acknowledged,
    )


def test_an_unacknowledged_end_passes_at_once() -> None:
    latch = AckLatch(120 * SECOND)
    end = event(Transition.END, 10)
    assert latch.filter([end]).events == [end]
    assert len(latch) == 0


def test_a_restart_within_the_silence_cancels_the_held_end() -> None:
    latch = AckLatch(120 * SECOND)
    out = latch.filter([event(Transition.END, 10, acknowledged=True)])
    assert out.events == [] and len(latch) == 1
    again = latch.filter([event(Transition.START, 10 + 119)])
    assert again.events == []
    assert again.reacknowledge == [(0, Condition.LOW)]
    assert len(latch) == 0


def test_a_restart_at_the_silence_boundary_is_a_new_alarm() -> None:
    latch = AckLatch(120 * SECOND)
    end = event(Transition.END, 10, acknowledged=True)
    latch.filter([end])
    start = event(Transition.START, 10 + 120)  # silence is [end, end + 120 s)
    out = latch.filter([start])
    assert out.events == [end, start] and out.reacknowledge == []


def test_held_ends_are_released_once_their_silence_has_passed() -> None:
    latch = AckLatch(120 * SECOND)
    first = event(Transition.END, 10, acknowledged=True)
    second = event(Transition.END, 20, acknowledged=True, stream=1)
    latch.filter([second, first])
    assert latch.due(129 * SECOND) == []
    assert latch.due(130 * SECOND) == [first]
    assert latch.due(10_000 * SECOND) == [second]
    assert len(latch) == 0


def test_another_condition_is_not_silenced() -> None:
    latch = AckLatch(120 * SECOND)
    latch.filter([event(Transition.END, 10, acknowledged=True)])
    critical = event(Transition.START, 10, condition=Condition.CRITICAL_LOW)
    assert latch.filter([critical]).events == [critical]
    assert len(latch) == 1  # the low alarm's END is still held


def test_zero_silence_holds_nothing() -> None:
    latch = AckLatch(0)
    end = event(Transition.END, 10, acknowledged=True)
    assert latch.filter([end]).events == [end]
