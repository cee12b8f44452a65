"""Build HL7 v2 acknowledgments (ACK with MSA and ERR), pure and clock-free.

HL7 v2.5.1 §2.9: in *original* mode the receiver answers AA (accepted), AE
(error: do not resend as is) or AR (rejected: may be resent). In *enhanced*
mode, announced by MSH-15 (accept acknowledgment type, table 0155), the
receiver sends a commit ACK CA/CE/CR, and only when MSH-15 asks for it (AL
always, NE never, ER on error, SU on success). MSA-2 echoes MSH-10. Each
problem becomes an ERR segment: ERR-2 location (ERL), ERR-3 error code from
table 0357, ERR-4 severity, ERR-8 a readable message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from medhub.errors import Issue, MedhubError
from medhub.hl7.er7 import Delimiters, escape, parse_er7

AckCode = Literal["AA", "AE", "AR"]
_ENHANCED: Final[dict[str, str]] = {"AA": "CA", "AE": "CE", "AR": "CR"}
_TABLE_0357_TEXT: Final[dict[int, str]] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class AckHeader:
    """The MSH fields of the inbound message an ACK needs (read leniently).

    Values are kept as raw ER7 in the inbound message's own delimiters, so the
    ACK, which uses the same delimiters, echoes them byte for byte (escape
    sequences and HD sub-parts included) without decoding and re-encoding.
    """

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5.1"
    trigger_event: str = ""
    accept_ack_type: str = ""
    delimiters: Delimiters = Delimiters()


def salvage_header(text: str) -> AckHeader:
    """Read what MSH fields can be read from a message that may not parse.

    Used so a rejected message still gets MSA-2 = its MSH-10 where possible.
    """
    text = text.removeprefix("\xef\xbb\xbf").removeprefix("\ufeff")  # byte order mark
    if not text.startswith("MSH") or len(text) < 8:
        return AckHeader()
    sep = text[3]
    first = text.replace("\r\n", "\r").replace("\n", "\r").split("\r", 1)[0]
    fields = ["MSH", *first.split(sep)]
    encoding = fields[2] if len(fields) > 2 else "^~\\&"
    delims = Delimiters()
    if len(encoding) >= 4 and len(set(encoding[:4] + sep)) == 5:
        delims = Delimiters(sep, encoding[0], encoding[1], encoding[2], encoding[3])

    def field(n: int) -> str:
        return fields[n] if len(fields) > n else ""

    def first_component(n: int) -> str:
        return field(n).split(delims.component)[0]

    event = fields[9].split(delims.component) if len(fields) > 9 else []
    return AckHeader(
        sending_application=field(3),
        sending_facility=field(4),
        receiving_application=field(5),
        receiving_facility=field(6),
        control_id=fields[10] if len(fields) > 10 else "",
        processing_id=first_component(11) or "P",
        version=first_component(12) or "2.5.1",
        trigger_event=event[1] if len(event) > 1 else "",
        accept_ack_type=first_component(15),
        delimiters=delims,
    )


def ack_wanted(header: AckHeader, code: AckCode) -> bool:
    """Whether an accept ACK is sent at all (enhanced mode may say never / only on error)."""
    mode = header.accept_ack_type.upper()
    if mode == "NE":
        return False
    if mode == "ER":
        return code != "AA"
    if mode == "SU":
        return code == "AA"
    return True


def build_ack(
    header: AckHeader,
    code: AckCode,
    *,
    control_id: str,
    now: datetime,
    issues: Sequence[Issue] = (),
    text: str = "",
) -> str:
    """The ACK message as ER7 text with CR segment ends (no MLLP framing).

    ``control_id`` is the ACK's own MSH-10; the inbound MSH-10 goes in MSA-2.
    """
    d = header.delimiters
    enhanced = header.accept_ack_type != ""
    msa_code = _ENHANCED[code] if enhanced else code
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S") + "+0000"
    msh = d.field.join(
        [
            "MSH",
            d.encoding_characters,
            header.receiving_application,
            header.receiving_facility,
            header.sending_application,
            header.sending_facility,
            stamp,
            "",
            d.component.join(["ACK", header.trigger_event, "ACK"])
            if header.trigger_event
            else "ACK",
            escape(control_id, d),
            header.processing_id,
            header.version,
        ]
    )
    msa = d.field.join(["MSA", msa_code, header.control_id, escape(text[:80], d)])
    segments = [msh, msa]
    for issue in issues:
        segments.append(_err_segment(issue, d))
    return "\r".join(segments) + "\r"


def _err_segment(issue: Issue, d: Delimiters) -> str:
    error_code = issue.hl7_error_code if issue.hl7_error_code is not None else 207
    severity = {"fatal": "E", "error": "E", "warning": "W", "information": "I"}[issue.severity]
    location = issue.location.to_er7(d.component) if issue.location else ""
    code_text = _TABLE_0357_TEXT.get(error_code, "Application error")
    err3 = d.component.join([str(error_code), escape(code_text, d), "HL70357"])
    return d.field.join(["ERR", "", location, err3, severity, "", "", "", escape(issue.message, d)])


def ack_accepts(ack: bytes, sent: bytes) -> bool:
    """True when ``ack`` is a well-formed AA/CA whose MSA-2 echoes ``sent``'s MSH-10.

    A positive ACK that names another message does not confirm this one
    (HL7 v2.5.1 §2.9.2); treating it as success would lose a message quietly.
    """
    try:
        answer = parse_er7(ack.decode("utf-8", errors="replace"))
        original = salvage_header(sent[:4096].decode("latin-1"))
    except MedhubError:
        return False
    msa = answer.segment("MSA")
    if msa is None:
        return False
    return msa.value(1) in ("AA", "CA") and msa.value(2) == original.control_id
