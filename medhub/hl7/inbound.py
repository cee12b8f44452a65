"""The inbound HL7 v2 service: decode, parse, apply, log, and build the ACK.

The transport (MLLP) hands over raw bytes and sends back whatever this returns;
it never decides an ACK itself. The rule (DESIGN.md, reliability): AA is
returned only after the message, its effects and its log entry are committed
in one transaction. A message that is refused is still logged, with the
reason, in a transaction of its own after the failed one rolled back.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from medhub.errors import ConflictError, DuplicateMessageError, Hl7Location, Issue, MedhubError
from medhub.fhir.store import Resources
from medhub.hl7.ack import AckCode, AckHeader, ack_wanted, build_ack, salvage_header
from medhub.hl7.er7 import Message, declared_charset, decode_er7, parse_er7
from medhub.hl7.message_log import LoggedMessage, MessageLog, Status
from medhub.hl7.patient_mapping import pid_to_patient, require_supported
from medhub.hl7.patient_upsert import upsert_patient

log = structlog.get_logger(__name__)


class InboundUnit(Protocol):
    """What one inbound message may touch, all in one transaction."""

    @property
    def resources(self) -> Resources: ...

    @property
    def messages(self) -> MessageLog: ...


UnitFactory = Callable[[], AbstractContextManager[InboundUnit]]


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """What happened to one message: its status, the ACK code and the ACK bytes (None: no ACK)."""

    status: Status
    ack_code: AckCode
    ack: bytes | None
    error: str | None = None


def _new_control_id() -> str:
    return uuid.uuid4().hex[:20]


class Hl7Inbound:
    """Processes one inbound HL7 v2 message at a time; safe to call from many threads."""

    def __init__(
        self,
        units: UnitFactory,
        *,
        clock: Callable[[], datetime],
        new_control_id: Callable[[], str] = _new_control_id,
    ) -> None:
        self._units = units
        self._clock = clock
        self._new_control_id = new_control_id

    def handle(self, raw: bytes, peer: str = "") -> InboundOutcome:
        """Process ``raw`` (one ER7 message, no MLLP framing); return the outcome and ACK."""
        received_at = self._clock()
        digest = hashlib.sha256(raw).hexdigest()
        header = salvage_header(raw[:4096].decode("latin-1"))
        sender = f"{header.sending_application}|{header.sending_facility}"
        try:
            message = parse_er7(decode_er7(raw))
            status = self._apply_retrying(message, raw, digest, sender, peer, received_at)
        except MedhubError as exc:
            return self._refuse(exc, header, raw, digest, sender, peer, received_at)
        except Exception as exc:  # a bug must not take the listener down or be ACKed AA
            log.exception("hl7.inbound.internal_error", peer=peer, control_id=header.control_id)
            error = MedhubError(
                f"internal error while processing the message: {type(exc).__name__}"
            )
            return self._refuse(error, header, raw, digest, sender, peer, received_at)
        log.info(
            "hl7.inbound.accepted",
            peer=peer,
            sender=sender,
            control_id=header.control_id,
            status=status,
        )
        return InboundOutcome(status, "AA", self._ack(header, "AA", raw, (), ""))

    def reject(self, raw: bytes, error: MedhubError, peer: str = "") -> InboundOutcome:
        """Refuse a message without processing it (an oversize frame: ``raw`` is its head)."""
        header = salvage_header(raw[:4096].decode("latin-1"))
        sender = f"{header.sending_application}|{header.sending_facility}"
        return self._refuse(
            error, header, raw, hashlib.sha256(raw).hexdigest(), sender, peer, self._clock()
        )

    def _apply_retrying(
        self,
        message: Message,
        raw: bytes,
        digest: str,
        sender: str,
        peer: str,
        received_at: datetime,
    ) -> Status:
        """Apply, retrying once when a concurrent copy of the same message won the race.

        The second attempt then sees the first copy's control id and answers it
        as a duplicate instead of failing the sender.
        """
        try:
            return self._apply(message, raw, digest, sender, peer, received_at)
        except ConflictError as exc:
            if isinstance(exc, DuplicateMessageError):
                raise
            return self._apply(message, raw, digest, sender, peer, received_at)

    def _apply(
        self,
        message: Message,
        raw: bytes,
        digest: str,
        sender: str,
        peer: str,
        received_at: datetime,
    ) -> Status:
        control_id = message.control_id
        message_type = "^".join(p for p in message.message_type[:2] if p)
        with self._units() as unit:
            applied = unit.messages.applied_hash(sender, control_id)
            status: Status = "accepted"
            if applied == digest:
                status = "duplicate"
            elif applied is not None:
                text = (
                    f"MSH-10 {control_id!r} from {sender} was already accepted with "
                    "different content; a control id must not be reused"
                )
                raise DuplicateMessageError(
                    text,
                    [
                        Issue(
                            text,
                            code="duplicate",
                            location=Hl7Location("MSH", 1, 10),
                            hl7_error_code=205,
                        )
                    ],
                )
            else:
                require_supported(message)
                upsert_patient(unit.resources, pid_to_patient(message))
            message_id = unit.messages.record(
                LoggedMessage(
                    received_at=received_at,
                    peer=peer,
                    sender=sender,
                    control_id=control_id,
                    message_type=message_type,
                    content_sha256=digest,
                    status=status,
                    ack_code="AA",
                    raw=raw,
                )
            )
            if status == "accepted":
                unit.messages.mark_applied(sender, control_id, digest, message_id)
        return status

    def _refuse(
        self,
        error: MedhubError,
        header: AckHeader,
        raw: bytes,
        digest: str,
        sender: str,
        peer: str,
        received_at: datetime,
    ) -> InboundOutcome:
        code: AckCode = error.hl7_ack_code
        issues = [
            issue
            if issue.hl7_error_code is not None
            else Issue(
                issue.message,
                issue.code,
                issue.severity,
                issue.expression,
                issue.location,
                error.hl7_error_code,
            )
            for issue in error.issues
        ]
        try:
            with self._units() as unit:
                unit.messages.record(
                    LoggedMessage(
                        received_at=received_at,
                        peer=peer,
                        sender=sender,
                        control_id=header.control_id,
                        message_type="",
                        content_sha256=digest,
                        status="rejected",
                        ack_code=code,
                        raw=raw,
                        error=error.message,
                    )
                )
        except MedhubError as log_error:
            # Not even the rejection could be stored: the sender must keep the message.
            log.error("hl7.inbound.log_failed", peer=peer, reason=log_error.message)
            code = "AR"
        log.warning(
            "hl7.inbound.refused",
            peer=peer,
            sender=sender,
            control_id=header.control_id,
            ack_code=code,
            reason=error.message,
        )
        return InboundOutcome(
            "rejected", code, self._ack(header, code, raw, issues, error.message), error.message
        )

    def _ack(
        self,
        header: AckHeader,
        code: AckCode,
        raw: bytes,
        issues: list[Issue] | tuple[()],
        text: str,
    ) -> bytes | None:
        if not ack_wanted(header, code):
            return None
        ack = build_ack(
            header,
            code,
            control_id=self._new_control_id(),
            now=self._clock(),
            issues=issues,
            text=text,
        )
        codec = declared_charset(raw)
        return ack.encode(codec if codec != "ascii" else "utf-8", errors="replace")
