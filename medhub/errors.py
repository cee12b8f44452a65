"""The one exception tree of medhub.

Every error medhub raises on purpose is a :class:`MedhubError`. Each class knows
how it is reported on each of the wire protocols medhub speaks, so a transport
never has to guess:

* the FHIR ``OperationOutcome.issue.code`` (FHIR R4 valueset-issue-type),
* the HTTP status (FHIR R4 http.html, "Outcome codes"),
* the HL7 v2 acknowledgment code (MSA-1, HL7 v2.5.1 table 0008) and the
  error code for ERR-3 (table 0357).

Library exceptions (pydantic, SQLAlchemy, sockets) are translated at the edge
with ``raise ... from exc`` so the original stays in the traceback.

::

    MedhubError                      500  exception      AR  207
     +-- InputError                  400  invalid        AE  207
     |    +-- MessageParseError      400  structure      AR  102  (HL7 / JSON syntax)
     |    +-- UnsupportedMessageError 400 not-supported  AR  200
     |    +-- UnsupportedMediaError  415  not-supported  AE  207  (FHIR XML body)
     |    +-- NotAcceptableError     406  not-supported  AE  207  (FHIR XML wanted)
     |    +-- InvalidResourceError   422  invalid        AE  102  (FHIR validation)
     |    +-- MissingDataError       422  required       AE  101
     +-- AuthenticationError         401  login          AR  207  (no or bad credentials)
     +-- ForbiddenError              403  forbidden      AR  207  (role, scope or care unit)
     +-- TooManyRequestsError        429  throttled      AR  207
     +-- NotFoundError               404  not-found      AE  204
     +-- GoneError                   410  deleted        AE  204
     +-- ConflictError               409  conflict       AE  205
     |    +-- ConcurrentWriteError   409  transient      AE  205  (retry)
     |    +-- DuplicateMessageError  409  duplicate      AE  205
     +-- PreconditionFailedError     412  conflict       AE  206
     +-- ConfigurationError          500  exception      AR  207
     +-- StoreUnavailableError       503  transient      AR  207
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

Severity = Literal["fatal", "error", "warning", "information"]
AckCode = Literal["AE", "AR"]


@dataclass(frozen=True, slots=True)
class Hl7Location:
    """Where in an HL7 v2 message a problem is (the ERL data type of ERR-2).

    Positions are 1-based as in the standard; 0 means "not applicable".
    """

    segment: str
    sequence: int = 1
    field: int = 0
    repetition: int = 0
    component: int = 0
    subcomponent: int = 0

    def to_er7(self, component_sep: str = "^") -> str:
        """Render as ERL (HL7 v2.5.1 §2.A.26): ``PID^1^7`` etc."""
        parts = [self.segment, str(self.sequence)]
        for value in (self.field, self.repetition, self.component, self.subcomponent):
            parts.append(str(value) if value else "")
        while parts and parts[-1] == "":
            parts.pop()
        return component_sep.join(parts)

    def terser(self) -> str:
        """Human-readable path such as ``PID-7`` or ``PID-3[2].4``."""
        text = self.segment
        if self.field:
            text += f"-{self.field}"
            if self.repetition > 1:
                text += f"[{self.repetition}]"
            if self.component:
                text += f".{self.component}"
            if self.subcomponent:
                text += f".{self.subcomponent}"
        return text


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem, precise enough for an OperationOutcome issue or an ERR segment."""

    message: str
    code: str = "invalid"
    severity: Severity = "error"
    expression: tuple[str, ...] = ()
    location: Hl7Location | None = None
    hl7_error_code: int | None = None


@dataclass
class MedhubError(Exception):
    """Base of every deliberate medhub error; see the module docstring for the tree."""

    message: str
    issues: list[Issue] = field(default_factory=list)

    http_status: ClassVar[int] = 500
    fhir_issue_code: ClassVar[str] = "exception"
    hl7_ack_code: ClassVar[AckCode] = "AR"
    hl7_error_code: ClassVar[int] = 207

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.issues:
            self.issues = [Issue(message=self.message, code=self.fhir_issue_code)]

    def __str__(self) -> str:
        return self.message


class InputError(MedhubError):
    """The sender sent something medhub cannot accept; sending it again will not help."""

    http_status = 400
    fhir_issue_code = "invalid"
    hl7_ack_code: ClassVar[AckCode] = "AE"


class MessageParseError(InputError):
    """The bytes are not a well-formed message (HL7 ER7 or JSON syntax)."""

    fhir_issue_code = "structure"
    hl7_ack_code: ClassVar[AckCode] = "AR"
    hl7_error_code = 102


class UnsupportedMessageError(InputError):
    """A well-formed message of a type or event medhub does not process."""

    fhir_issue_code = "not-supported"
    hl7_ack_code: ClassVar[AckCode] = "AR"
    hl7_error_code = 200


class UnsupportedMediaError(InputError):
    """The body is in a format medhub does not read (FHIR XML, say): HTTP 415."""

    http_status = 415
    fhir_issue_code = "not-supported"


class NotAcceptableError(InputError):
    """The client accepts only formats medhub does not write: HTTP 406."""

    http_status = 406
    fhir_issue_code = "not-supported"


class InvalidResourceError(InputError):
    """A FHIR resource (sent or mapped) fails validation; issues carry element paths."""

    http_status = 422
    hl7_error_code = 102


class MissingDataError(InputError):
    """A required element is absent (HL7 table 0357 code 101)."""

    http_status = 422
    fhir_issue_code = "required"
    hl7_error_code = 101


class AuthenticationError(MedhubError):
    """No credentials, or credentials that are wrong, expired or revoked (HTTP 401)."""

    http_status = 401
    fhir_issue_code = "login"


class ForbiddenError(MedhubError):
    """Authenticated, but the role, scope or care unit does not allow this (HTTP 403)."""

    http_status = 403
    fhir_issue_code = "forbidden"


class TooManyRequestsError(MedhubError):
    """A client sent more requests (or failed logins) than it may; it should wait (HTTP 429)."""

    http_status = 429
    fhir_issue_code = "throttled"


class NotFoundError(MedhubError):
    """No such resource (or message) exists."""

    http_status = 404
    fhir_issue_code = "not-found"
    hl7_ack_code: ClassVar[AckCode] = "AE"
    hl7_error_code = 204


class GoneError(MedhubError):
    """The resource existed and was deleted; its history is still kept."""

    http_status = 410
    fhir_issue_code = "deleted"
    hl7_ack_code: ClassVar[AckCode] = "AE"
    hl7_error_code = 204


class ConflictError(MedhubError):
    """The request conflicts with what is stored."""

    http_status = 409
    fhir_issue_code = "conflict"
    hl7_ack_code: ClassVar[AckCode] = "AE"
    hl7_error_code = 205


class ConcurrentWriteError(ConflictError):
    """Another transaction wrote the same row first; running the request again will work."""

    fhir_issue_code = "transient"


class DuplicateMessageError(ConflictError):
    """Same sender and message control id (MSH-10) as an earlier message, different content."""

    fhir_issue_code = "duplicate"


class PreconditionFailedError(MedhubError):
    """A version precondition (If-Match) did not hold."""

    http_status = 412
    fhir_issue_code = "conflict"
    hl7_ack_code: ClassVar[AckCode] = "AE"
    hl7_error_code = 206


class ConfigurationError(MedhubError):
    """A setting is missing or wrong; medhub refuses to start rather than run half-configured."""


class StoreUnavailableError(MedhubError):
    """The database could not be reached or refused the write; the sender should retry."""

    http_status = 503
    fhir_issue_code = "transient"
    hl7_ack_code: ClassVar[AckCode] = "AR"
    hl7_error_code = 207
