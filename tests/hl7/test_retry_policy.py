"""The outbound delivery policy, pure: back-off with cap and jitter, give-up, ACK verdicts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medhub.errors import Issue
from medhub.hl7.ack import build_ack, salvage_header
from medhub.hl7.outbound_policy import (
    GiveUp,
    RetryAt,
    RetryPolicy,
    after_failure,
    backoff_delay,
    judge_ack,
)
from tests.builders import adt

NOW = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def test_the_delay_doubles_from_the_base_until_the_cap() -> None:
    delays = [backoff_delay(n, base=1.0, cap=30.0, jitter=1.0) for n in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_jitter_spreads_the_delay_between_half_and_all_of_it() -> None:
    assert backoff_delay(3, base=1.0, cap=60.0, jitter=0.0) == 2.0
    assert backoff_delay(3, base=1.0, cap=60.0, jitter=0.5) == 3.0
    assert backoff_delay(3, base=1.0, cap=60.0, jitter=1.0) == 4.0


def test_a_long_outage_does_not_overflow_the_delay() -> None:
    assert backoff_delay(10_000, base=1.0, cap=600.0, jitter=1.0) == 600.0


@given(
    failures=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.0, max_value=100.0),
    extra=st.floats(min_value=0.0, max_value=10_000.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_the_delay_always_stays_within_half_the_plan_and_the_cap(
    failures: int, base: float, extra: float, jitter: float
) -> None:
    cap = base + extra
    delay = backoff_delay(failures, base=base, cap=cap, jitter=jitter)
    planned = min(cap, base * 2.0 ** (failures - 1))
    assert planned / 2 - 1e-9 <= delay <= cap + 1e-9


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, base=1.0, cap=2.0, jitter=0.5)
    with pytest.raises(ValueError):
        backoff_delay(1, base=1.0, cap=2.0, jitter=1.5)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_seconds=10.0, max_delay_seconds=1.0)


def test_failures_are_retried_later_until_the_last_attempt_then_given_up() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay_seconds=10.0, max_delay_seconds=100.0)
    first = after_failure(policy, attempts=1, now=NOW, jitter=1.0)
    second = after_failure(policy, attempts=2, now=NOW, jitter=1.0)
    assert first == RetryAt(NOW + timedelta(seconds=10), timedelta(seconds=10))
    assert second == RetryAt(NOW + timedelta(seconds=20), timedelta(seconds=20))
    assert after_failure(policy, attempts=3, now=NOW, jitter=1.0) == GiveUp(3)
    assert after_failure(policy, attempts=7, now=NOW, jitter=0.0) == GiveUp(7)


def ack_for(message: bytes, code: str, *, echo: str | None = None, error: str = "") -> bytes:
    header = salvage_header(message.decode())
    if echo is not None:
        header = replace(header, control_id=echo)
    issues = [Issue(error, hl7_error_code=204)] if error else []
    ack = build_ack(header, code, control_id="ACK-1", now=NOW, issues=issues)  # type: ignore[arg-type]
    return ack.encode()


def test_aa_means_sent() -> None:
    verdict = judge_ack(ack_for(adt("C1"), "AA"), "C1")
    assert (verdict.outcome, verdict.ack_code, verdict.echoes) == ("sent", "AA", True)


def test_ae_parks_the_message_with_the_err_text() -> None:
    verdict = judge_ack(ack_for(adt("C1"), "AE", error="PID-3 patient 4711 unknown"), "C1")
    assert verdict.outcome == "park"
    assert verdict.ack_code == "AE"
    assert "PID-3 patient 4711 unknown" in verdict.reason
    assert "204 Unknown key identifier" in verdict.reason


def test_ar_is_retried() -> None:
    verdict = judge_ack(ack_for(adt("C1"), "AR", error="database busy"), "C1")
    assert (verdict.outcome, verdict.ack_code) == ("retry", "AR")
    assert "database busy" in verdict.reason


def test_enhanced_mode_commit_acks_are_read_like_their_original_mode_twins() -> None:
    message = adt("C1", msh15="AL")
    assert judge_ack(ack_for(message, "AA"), "C1").ack_code == "CA"
    assert judge_ack(ack_for(message, "AA"), "C1").outcome == "sent"
    assert judge_ack(ack_for(message, "AE", error="bad"), "C1").outcome == "park"
    assert judge_ack(ack_for(message, "AR", error="busy"), "C1").outcome == "retry"


def test_an_aa_for_another_message_is_not_a_success() -> None:
    verdict = judge_ack(ack_for(adt("C1"), "AA", echo="C0"), "C1")
    assert verdict.outcome == "retry"
    assert verdict.echoes is False
    assert "'C0' does not echo our MSH-10 'C1'" in verdict.reason


def test_an_answer_without_msa_is_retried() -> None:
    verdict = judge_ack(b"MSH|^~\\&|X|Y|||20240101||ACK|1|P|2.5.1\r", "C1")
    assert (verdict.outcome, verdict.echoes) == ("retry", False)
    assert judge_ack(b"", "C1").outcome == "retry"
    assert judge_ack(b"\x00\xff garbage", "C1").outcome == "retry"


def test_a_sloppy_but_readable_ack_is_accepted() -> None:
    """No MSH-10/MSH-12, LF segment ends: MSA is what matters (v2.5.1 §2.9)."""
    assert judge_ack(b"MSH|^~\\&|X|Y\nMSA|AA|C1\n", "C1").outcome == "sent"
    assert judge_ack(b"MSA|AA|C1", "C1").outcome == "sent"


def test_escaped_control_ids_are_compared_unescaped_and_other_delimiters_are_honoured() -> None:
    assert judge_ack(b"MSH#*~\\&#A\rMSA#AA#X\\S\\1\r", "X*1").outcome == "sent"
    assert judge_ack(b"MSH|^~\\&|A\rMSA|AA|X\\S\\1\r", "X^1").outcome == "sent"


def test_v23_err_segment_text_is_used() -> None:
    ack = b"MSH|^~\\&|A|B|||20240101||ACK|9|P|2.3\rMSA|AE|C1\rERR|PID^1^3^204&Unknown key\r"
    verdict = judge_ack(ack, "C1")
    assert verdict.outcome == "park"
    assert "204 Unknown key" in verdict.reason


def test_an_unknown_code_is_retried_and_a_missing_reason_is_said() -> None:
    assert judge_ack(b"MSA|ZZ|C1\r", "C1").outcome == "retry"
    assert judge_ack(b"MSA|AE|C1\r", "C1").reason == "AE: no reason given"
