"""Small builders of HL7 v2 test messages (CR segment ends, as on the wire)."""

from __future__ import annotations


def adt(
    control_id: str = "MSG0001",
    mrn: str = "MRN-1",
    *,
    event: str = "A01",
    family: str = "DOE",
    given: str = "JANE",
    birth: str = "19700517",
    sex: str = "F",
    sender: str = "ADTApp",
    facility: str = "GHH",
    authority: str = "HOSP&1.2.840.114350&ISO",
    msh15: str = "",
) -> bytes:
    """An ADT message with MSH, EVN, PID and PV1."""
    segments = [
        f"MSH|^~\\&|{sender}|{facility}|MEDHUB|ICU|20240101120000||ADT^{event}^ADT_A01|"
        f"{control_id}|P|2.5.1|||{msh15}|",
        f"EVN|{event}|20240101120000",
        f"PID|1||{mrn}^^^{authority}^MR||{family}^{given}||{birth}|{sex}|||"
        "1 MAIN ST^^SPRINGFIELD^IL^62701^USA^H||^PRN^PH^^^217^5551234",
        "PV1|1|I|ICU^101^A",
    ]
    return ("\r".join(segments) + "\r").encode()


def oru(control_id: str = "ORU0001") -> bytes:
    segments = [
        f"MSH|^~\\&|MON|ICU|MEDHUB|ICU|20240101120000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        "PID|1||MRN-1^^^HOSP^MR||DOE^JANE",
        "OBR|1|||8867-4^Heart rate^LN",
        "OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F",
    ]
    return ("\r".join(segments) + "\r").encode()
