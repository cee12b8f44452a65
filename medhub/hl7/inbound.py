"""The inbound HL7 v2 service: decode, parse, apply, log, and build the ACK.

The transport (MLLP) hands over raw bytes and sends back whatever this returns;
it never decides an ACK itself. The rule (DESIGN.md, reliability): AA is
returned only after the message, its effects and its log entry are committed.

Messages are processed in *batches* that share one transaction (group commit):
one fsync for many messages from many connections, so durability does not cap
throughput. Each message runs in its own savepoint, so a message that cannot
be applied is rolled back alone and logged as ``dead-letter`` while the others
in the batch commit. If the commit itself fails, every message of the batch is
answered AR (not stored, resend) and none is ACKed AA.

Statuses in the message log: ``accepted`` (mapped and applied), ``stored``
(valid, of a type medhub does not map: kept and ACKed AA), ``duplicate`` (a
resend of an applied message: ACKed again, not applied twice), ``dead-letter``
(parsed but not applicable: AE) and ``rejected`` (not parseable: AR).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from medhub.correlation import correlated, new_correlation_id
from medhub.db.outbox import EventOutbox
from medhub.errors import (
    ConcurrentWriteError,
    DuplicateMessageError,
    Hl7Location,
    Issue,
    MedhubError,
    StoreUnavailableError,
)
from medhub.fhir.store import Resources
from medhub.hl7.ack import AckCode, AckHeader, ack_wanted, build_ack, salvage_header
from medhub.hl7.apply_context import ApplyContext
from medhub.hl7.audit_event import message_audit_event
from medhub.hl7.dispatch import applier_for, message_key
from medhub.hl7.er7 import Message, declared_charset, decode_er7, parse_er7
from medhub.hl7.message_log import LoggedMessage, MessageLog, Status
from medhub.hl7.structure_validation import check_structure
from medhub.tracing import span

log = structlog.get_logger(__name__)


class InboundUnit(Protocol):
    """What a batch of inbound messages may touch, all in one transaction."""

    @property
    def resources(self) -> Resources: ...

    @property
    def messages(self) -> MessageLog: ...

    @property
    def outbox(self) -> EventOutbox: ...

    def savepoint(self) -> AbstractContextManager[object]:
        """A nested transaction: rolled back alone if the block raises."""


UnitFactory = Callable[[], AbstractContextManager[InboundUnit]]


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """What happened to one message: its status, the ACK code and the ACK bytes (None: no ACK)."""

    status: Status
    ack_code: AckCode
    ack: bytes | None
    error: str | None = None


@dataclass(slots=True)
class _Item:
    """One message on its way through a batch."""

    raw: bytes
    peer: str
    received_at: datetime
    digest: str
    header: AckHeader
    message: Message | None = None
    error: MedhubError | None = None
    status: Status = "accepted"
    #: Bound while the message is applied, stored in its log row (:mod:`medhub.correlation`).
    correlation_id: str = field(default_factory=new_correlation_id)

    @property
    def sender(self) -> str:
        return f"{self.header.sending_application}|{self.header.sending_facility}"


class _IsolateBatch(Exception):
    """A message failed in a batch run without savepoints: run it again with one per message."""


class _RetryBatch(Exception):
    """A concurrent transaction applied one of the batch's messages first: run the batch again."""


def _new_control_id() -> str:
    return uuid.uuid4().hex[:20]


class Hl7Inbound:
    """Processes inbound HL7 v2 messages; safe to call from many threads."""

    def __init__(
        self,
        units: UnitFactory,
        *,
        clock: Callable[[], datetime],
        new_control_id: Callable[[], str] = _new_control_id,
        strict_structure: bool = False,
        audit: bool = False,
    ) -> None:
        """``audit``: write an AuditEvent per applied message (:mod:`medhub.hl7.audit_event`)."""
        self._strict_structure = strict_structure
        self._audit = audit
        self._units = units
        self._clock = clock
        self._new_control_id = new_control_id

    def handle(self, raw: bytes, peer: str = "") -> InboundOutcome:
        """Process one ER7 message (no MLLP framing) and return its outcome and ACK."""
        return self.handle_batch([(raw, peer)])[0]

    def handle_batch(self, batch: Sequence[tuple[bytes, str]]) -> list[InboundOutcome]:
        """Process several messages in one transaction; outcomes in the same order.

        The batch first runs without a savepoint per message (two statements
        fewer per message, and the queued writes of several messages go out
        together). If a message fails, that attempt is rolled back and the
        batch runs again with each message in its own savepoint, so the
        failing one is dead-lettered alone and the others still commit.
        """
        items = [self._prepare(raw, peer) for raw, peer in batch]
        isolated = len(items) == 1
        conflicts = 0
        while True:
            try:
                self._commit_batch(items, isolated=isolated)
                break
            except _IsolateBatch:
                isolated = True
            except (_RetryBatch, ConcurrentWriteError) as exc:
                conflicts += 1
                if conflicts == 2:
                    self._fail_all(
                        items,
                        StoreUnavailableError(
                            f"a concurrent write kept conflicting ({exc}); resend the message"
                        ),
                    )
                    break
            except MedhubError as exc:
                self._fail_all(items, exc)
                break
            for item in items:
                if item.message is not None:
                    item.status, item.error = "accepted", None
        return [self._outcome(item) for item in items]

    def reject(self, raw: bytes, error: MedhubError, peer: str = "") -> InboundOutcome:
        """Refuse a message without processing it (an oversize frame: ``raw`` is its head)."""
        item = self._prepare(raw, peer, parse=False)
        item.error, item.status = error, "rejected"
        try:
            with self._units() as unit:
                self._log(unit, item)
        except MedhubError as exc:
            self._fail_all([item], exc)
        return self._outcome(item)

    # -- stages ---------------------------------------------------------------

    def _prepare(self, raw: bytes, peer: str, *, parse: bool = True) -> _Item:
        item = _Item(
            raw,
            peer,
            self._clock(),
            hashlib.sha256(raw).hexdigest(),
            salvage_header(raw[:4096].decode("latin-1")),
        )
        if parse:
            try:
                text = decode_er7(raw)
                item.message = parse_er7(text)
                if self._strict_structure:
                    check_structure(text, item.message.msh.value(12))
            except MedhubError as exc:
                item.error, item.status = exc, "rejected"
        return item

    def _commit_batch(self, items: list[_Item], *, isolated: bool) -> None:
        with self._units() as unit:
            for item in items:
                if item.message is not None and item.error is None:
                    self._apply_one(unit, item, isolated=isolated)
                self._log(unit, item)

    def _apply_one(self, unit: InboundUnit, item: _Item, *, isolated: bool) -> None:
        message = item.message
        assert message is not None
        guard = unit.savepoint() if isolated else contextlib.nullcontext()
        try:
            with (
                correlated(item.correlation_id),
                span("hl7.inbound", **{"hl7.message_type": message_key(message)}),
                guard,
            ):
                applied = unit.messages.applied_hash(item.sender, message.control_id)
                if applied == item.digest:
                    item.status = "duplicate"
                    return
                if applied is not None:
                    text = (
                        f"MSH-10 {message.control_id!r} from {item.sender} was already "
                        "accepted with different content; a control id must not be reused"
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
                applier = applier_for(message)
                if applier is None:
                    item.status = "stored"  # valid but not interpreted: kept and acknowledged
                else:
                    context = ApplyContext(unit.resources, item.received_at)
                    stored = applier(message, context)
                    if self._audit and stored:
                        audit = message_audit_event(
                            stored,
                            sender=item.sender,
                            peer=item.peer,
                            control_id=message.control_id,
                            message_type=message_key(message),
                            received_at=item.received_at,
                        )
                        unit.resources.create(audit)
                    for event in context.events:
                        unit.outbox.enqueue(event, now=item.received_at)
                    item.status = "accepted"
                unit.messages.mark_applied(item.sender, message.control_id, item.digest)
        except ConcurrentWriteError as exc:
            raise _RetryBatch from exc
        except MedhubError as exc:
            if not isolated:
                raise _IsolateBatch from exc
            item.error, item.status = exc, "dead-letter"
        except Exception as exc:  # a bug must not take the listener down or be ACKed AA
            if not isolated:
                raise _IsolateBatch from exc
            log.exception(
                "hl7.inbound.internal_error", peer=item.peer, control_id=item.header.control_id
            )
            item.error = MedhubError(
                f"internal error while applying the message: {type(exc).__name__}"
            )
            item.status = "dead-letter"

    def _log(self, unit: InboundUnit, item: _Item) -> None:
        message = item.message
        unit.messages.record(
            LoggedMessage(
                received_at=item.received_at,
                peer=item.peer,
                sender=item.sender,
                control_id=message.control_id if message is not None else item.header.control_id,
                message_type=message_key(message) if message is not None else "",
                content_sha256=item.digest,
                status=item.status,
                ack_code=item.error.hl7_ack_code if item.error else "AA",
                raw=item.raw,
                error=item.error.message if item.error else None,
                correlation_id=item.correlation_id,
            )
        )

    def _fail_all(self, items: list[_Item], error: MedhubError) -> None:
        """The batch could not be committed: nothing is stored, every sender must resend (AR)."""
        log.error("hl7.inbound.batch_failed", size=len(items), reason=error.message)
        if not isinstance(error, StoreUnavailableError):
            error = StoreUnavailableError(
                f"the message was not stored ({error.message}); resend it"
            )
        for item in items:
            item.error, item.status = error, "rejected"

    def _outcome(self, item: _Item) -> InboundOutcome:
        error = item.error
        if error is None:
            log.info(
                "hl7.inbound.accepted",
                correlation_id=item.correlation_id,
                peer=item.peer,
                sender=item.sender,
                control_id=item.header.control_id,
                status=item.status,
            )
            return InboundOutcome(item.status, "AA", self._ack(item, "AA", [], ""))
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
        log.warning(
            "hl7.inbound.refused",
            correlation_id=item.correlation_id,
            peer=item.peer,
            sender=item.sender,
            control_id=item.header.control_id,
            ack_code=code,
            status=item.status,
            reason=error.message,
        )
        return InboundOutcome(
            item.status, code, self._ack(item, code, issues, error.message), error.message
        )

    def _ack(self, item: _Item, code: AckCode, issues: list[Issue], text: str) -> bytes | None:
        if not ack_wanted(item.header, code):
            return None
        ack = build_ack(
            item.header,
            code,
            control_id=self._new_control_id(),
            now=self._clock(),
            issues=issues,
            text=text,
        )
        codec = declared_charset(item.raw)
        return ack.encode(codec if codec != "ascii" else "utf-8", errors="replace")
