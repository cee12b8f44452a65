"""What to do after sending an HL7 v2 message: read the ACK, retry with back-off, or park.

Pure and clock-free (``now`` and the jitter are parameters), so every rule is
tested without a network or a database.

The ACK rules (HL7 v2.5.1 §2.9.2 original mode, §2.9.3 enhanced mode;
MSA-1 codes from table 0008):

* AA / CA: the partner took the message -> *sent*.
* AE / CE: the partner refuses this message as it is; sending it again will
  not help -> *park* it with the ERR text, so a poison message does not block
  the queue behind it.
* AR / CR (a transient refusal), no ACK, an unreadable ACK -> *retry* later.
* An ACK whose MSA-2 does not echo our MSH-10 confirms some other message, not
  this one -> *retry* (Mirth Connect counts it as sent; that loses messages).

The back-off is exponential with a cap and "equal jitter" (AWS Architecture
Blog, "Exponential Backoff And Jitter", 2015): the delay is between half and
all of ``base * multiplier ** (n - 1)``, capped, so many senders retrying a
partner that came back do not all knock at the same instant, and none of them
retries sooner than half the planned delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from medhub.hl7.ack import salvage_header
from medhub.hl7.er7 import Segment

Outcome = Literal["sent", "park", "retry"]
_ACCEPTED: Final = frozenset({"AA", "CA"})
_ERROR: Final = frozenset({"AE", "CE"})
_REJECTED: Final = frozenset({"AR", "CR"})
MAX_REASON_CHARS: Final = 2000


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a message is retried before it is parked."""

    max_attempts: int = 10
    base_delay_seconds: float = 5.0
    max_delay_seconds: float = 600.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError("delays must satisfy 0 <= base_delay_seconds <= max_delay_seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try again at ``when`` (``delay`` after the failure)."""

    when: datetime
    delay: timedelta


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop trying: ``attempts`` attempts were made, the policy's maximum."""

    attempts: int


def backoff_delay(
    failures: int, *, base: float, cap: float, multiplier: float = 2.0, jitter: float
) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1-based).

    ``jitter`` is a number in [0, 1] (``random.random()`` in production, fixed
    in tests); 0 gives half the capped exponential delay, 1 all of it.
    """
    if failures < 1:
        raise ValueError("failures counts from 1")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be within [0, 1]")
    try:
        planned = min(cap, base * multiplier ** (failures - 1))
    except OverflowError:  # a long outage: the exponential passed every float, and the cap
        planned = cap
    return planned * (0.5 + 0.5 * jitter)


def after_failure(
    policy: RetryPolicy, *, attempts: int, now: datetime, jitter: float
) -> RetryAt | GiveUp:
    """The next step after attempt number ``attempts`` (1-based) failed."""
    if attempts >= policy.max_attempts:
        return GiveUp(attempts)
    seconds = backoff_delay(
        attempts,
        base=policy.base_delay_seconds,
        cap=policy.max_delay_seconds,
        multiplier=policy.multiplier,
        jitter=jitter,
    )
    delay = timedelta(seconds=seconds)
    return RetryAt(now + delay, delay)


@dataclass(frozen=True, slots=True)
class AckVerdict:
    """What an ACK means for the message it answers.

    ``ack_code`` is MSA-1 as received ("" when there was none to read);
    ``reason`` says why a message is not sent, in words for the operator;
    ``echoes`` is False when the answer is not an ACK of this message at all
    (a sender then resynchronises, e.g. by opening a new connection).
    """

    outcome: Outcome
    ack_code: str
    reason: str = ""
    echoes: bool = True


def judge_ack(ack: bytes, control_id: str) -> AckVerdict:
    """Read an ACK (MLLP frame contents) for the message whose MSH-10 is ``control_id``.

    Read leniently (HL7 v2.5.1 §2.9: a receiver must cope with a sloppy ACK):
    only MSA is required; MSH supplies the delimiters when present. The text
    of a refusal comes from MSA-3 and every ERR segment (ERR-8 user message,
    ERR-3.2 code text, and the v2.3 ERR-1 code text).
    """
    text = ack.decode("utf-8", errors="replace").lstrip("\r\n\x00 \t\ufeff")
    delims = salvage_header(text).delimiters
    segments = [
        Segment(line[:3], line.split(delims.field), delims)
        for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
        if line[:3] in ("MSA", "ERR") and line[3:4] == delims.field
    ]
    msa = next((s for s in segments if s.name == "MSA"), None)
    if msa is None:
        return AckVerdict(
            "retry", "", "the answer has no MSA segment, so it is not an ACK", echoes=False
        )
    code = msa.value(1).strip().upper()
    echoed = msa.value(2)
    if echoed != control_id:
        return AckVerdict(
            "retry",
            code,
            f"ACK MSA-2 {echoed!r} does not echo our MSH-10 {control_id!r}; "
            "it confirms another message, not this one",
            echoes=False,
        )
    if code in _ACCEPTED:
        return AckVerdict("sent", code)
    details = _refusal_text(msa, [s for s in segments if s.name == "ERR"])
    if code in _ERROR:
        return AckVerdict("park", code, _clip(f"{code}: {details}"))
    if code in _REJECTED:
        return AckVerdict("retry", code, _clip(f"{code}: {details}"))
    return AckVerdict("retry", code, _clip(f"unknown acknowledgment code {code!r}: {details}"))


def _refusal_text(msa: Segment, errors: list[Segment]) -> str:
    texts: list[str] = []
    for candidate in (msa.value(3), *(t for err in errors for t in _err_texts(err))):
        candidate = candidate.strip()
        if candidate and candidate not in texts:
            texts.append(candidate)
    return "; ".join(texts) or "no reason given"


def _err_texts(err: Segment) -> list[str]:
    """ERR-8 (v2.5+ user message), ERR-3 code^text, ERR-1.4 (v2.3 CE code^text)."""
    texts = [err.value(8)]
    code, code_text = err.value(3, 1, 1), err.value(3, 1, 2)
    if code or code_text:
        texts.append(f"{code} {code_text}".strip())
    legacy_code, legacy_text = err.value(1, 1, 4, 1), err.value(1, 1, 4, 2)
    if legacy_code or legacy_text:
        texts.append(f"{legacy_code} {legacy_text}".strip())
    return texts


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
