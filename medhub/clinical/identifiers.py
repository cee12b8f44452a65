"""Identifier systems: how an HL7 v2 assigning authority becomes a FHIR ``Identifier.system``.

FHIR R4 datatypes.html#Identifier wants a URI. HL7 v2 CX-4 (assigning
authority, an HD) carries a namespace id and optionally a universal id with its
type (table 0301). The rule, documented in the README:

* universal id of type ISO -> ``urn:oid:<oid>``;
* universal id of type UUID -> ``urn:uuid:<uuid>``;
* universal id of type URI or a namespace id that already is a URI -> as is;
* otherwise the namespace id -> ``urn:medhub:assigning-authority:<namespace>``.
"""

from __future__ import annotations

from typing import Final

LOCAL_AUTHORITY_PREFIX: Final = "urn:medhub:assigning-authority:"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"


def authority_system(
    namespace: str, universal_id: str = "", universal_type: str = ""
) -> str | None:
    """The FHIR system URI for an assigning authority, or None when none was sent."""
    kind = universal_type.strip().upper()
    if universal_id:
        if kind == "ISO":
            return f"urn:oid:{universal_id}"
        if kind == "UUID":
            return f"urn:uuid:{universal_id.lower()}"
        if kind in ("URI", "URL") or ":" in universal_id:
            return universal_id
    if namespace:
        if namespace.startswith(("http://", "https://", "urn:")):
            return namespace
        return LOCAL_AUTHORITY_PREFIX + namespace
    return None
