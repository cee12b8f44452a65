"""Optional strict message-structure validation with hl7apy (``MEDHUB_MLLP__STRICT_STRUCTURE``).

hl7apy knows each version's message structures (which segments and groups an
ADT_A01 must have, in which order). That check is thorough but slow (about 40
messages/s here, see bench/RESULTS.md), so medhub runs it only when an
interface is configured for strict validation; the fast ER7 parser and the
mappers' own checks cover the default path.
"""

from __future__ import annotations

from hl7apy import exceptions as hl7apy_errors
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from medhub.errors import Hl7Location, Issue, MessageParseError, UnsupportedMessageError

#: Versions hl7apy 1.3 has definitions for.
SUPPORTED_VERSIONS = frozenset(
    {"2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2"}
)


def check_structure(text: str, version: str) -> None:
    """Raise :class:`MessageParseError` (AE/AR with ERR) if ``text`` breaks its structure."""
    if version not in SUPPORTED_VERSIONS:
        message = f"MSH-12 version {version!r} has no structure definitions for strict validation"
        raise UnsupportedMessageError(
            message, [Issue(message, location=Hl7Location("MSH", 1, 12), hl7_error_code=203)]
        )
    try:
        parsed = parse_message(
            text.replace("\n", "\r"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True
        )
        parsed.validate()
    except (hl7apy_errors.HL7apyException, ValueError, KeyError) as exc:
        message = f"message structure is not valid for HL7 v{version}: {exc}"
        raise MessageParseError(
            message, [Issue(message, location=Hl7Location("MSH", 1, 9), hl7_error_code=100)]
        ) from exc
