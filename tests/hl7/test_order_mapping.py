"""ORM^O01 / OML^O21 -> ServiceRequest / MedicationRequest, pure: corpus and edge cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medhub.clinical.resources import validate_resource
from medhub.clinical.vital_codes import UCUM_SYSTEM
from medhub.errors import InputError, MedhubError, MissingDataError
from medhub.hl7.er7 import Message, decode_er7, parse_er7
from medhub.hl7.order_mapping import (
    ORDER_CONTROLS,
    ORDER_STATUS,
    MappedOrder,
    OrderKind,
    map_orders,
    order_status,
)

SUBJECT = {"reference": "Patient/p1"}
REQUEST_STATUS = {
    "ServiceRequest": {
        "draft",
        "active",
        "on-hold",
        "revoked",
        "completed",
        "entered-in-error",
        "unknown",
    },
    "MedicationRequest": {
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    },
}
MSH = "MSH|^~\\&|CPOE|WARD|LIS|LAB|20240301090000+0100||{type}|O1|P|2.5.1"
PID = "PID|1||MRN-7^^^HOSP&1.2.3&ISO^MR||ROE^RICHARD||19600101|M"


def orc(
    control: str = "NW",
    placer: str = "P-1^CPOE",
    filler: str = "",
    status: str = "",
    requester: str = "1234^WELBY^MARCUS^^^DR^^^NPI",
    authored: str = "20240301085500+0100",
) -> str:
    return f"ORC|{control}|{placer}|{filler}||{status}||||{authored}|||{requester}"


OBR = "OBR|1|||2345-7^Glucose^LN||||||||||||^ORDERING^OLGA"


def message(*segments: str, msh9: str = "OML^O21^OML_O21") -> Message:
    return parse_er7("\r".join([MSH.format(type=msh9), PID, *segments]) + "\r")


def only(msg: Message) -> MappedOrder:
    [order] = map_orders(msg).orders
    return order


def linked(order: MappedOrder) -> dict[str, Any]:
    """The order as the applier stores it (subject, requester reference, default status)."""
    resource = {"status": "unknown", **order.resource, "subject": SUBJECT}
    if order.requester is not None:
        assert validate_resource(order.requester, expected_type="Practitioner")
        resource["requester"] = {"reference": "Practitioner/r1"}
    elif order.requester_display:
        resource["requester"] = {"display": order.requester_display}
    return resource


def refusal(msg: Message) -> MedhubError:
    with pytest.raises(MedhubError) as caught:
        map_orders(msg)
    return caught.value


def err(error: MedhubError) -> tuple[str, int | None]:
    [issue] = error.issues
    assert issue.location is not None
    return issue.location.to_er7(), issue.hl7_error_code


# -- the corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("ORM-O01-01.hl7", ["ServiceRequest"]),
        ("ORM-O01-03.hl7", ["ServiceRequest", "ServiceRequest"]),
        ("ORM-O01-04.hl7", ["ServiceRequest"]),
        ("ORM-O01-05.hl7", ["ServiceRequest"]),
        ("ORM-O01-06.hl7", ["MedicationRequest"]),
        ("OML-O21-01.hl7", ["ServiceRequest"]),
        ("LAB-ORM-1.hl7", ["ServiceRequest"]),
    ],
)
def test_every_corpus_order_maps_to_valid_resources(
    corpus: Path, name: str, kinds: list[str]
) -> None:
    mapped = map_orders(parse_er7(decode_er7((corpus / "hl7" / name).read_bytes())))
    assert validate_resource(mapped.patient, expected_type="Patient")
    assert [o.kind for o in mapped.orders] == kinds
    for order in mapped.orders:
        resource = linked(order)
        assert validate_resource(resource, expected_type=order.kind) == resource
        assert resource["status"] in REQUEST_STATUS[order.kind]
        assert resource["intent"] == "order"
        assert resource["identifier"]


@pytest.mark.parametrize(
    ("name", "location", "code", "kind"),
    [
        # Three ORC|SC orders with neither placer nor filler number: nothing to update.
        ("OML-O21-03.hl7", "ORC^1^2", 101, MissingDataError),
        # The GT1 line swallowed the ORC (no segment end before "ORC|NW"): OBR has no ORC.
        ("MDHHS-OML-O21-1.hl7", "OBR^1", 100, InputError),
    ],
)
def test_corpus_orders_that_cannot_be_applied_are_refused_precisely(
    corpus: Path, name: str, location: str, code: int, kind: type[MedhubError]
) -> None:
    error = refusal(parse_er7(decode_er7((corpus / "hl7" / name).read_bytes())))
    assert isinstance(error, kind)
    assert err(error) == (location, code)


def test_corpus_lab_order_reads_placer_filler_code_and_requester(corpus: Path) -> None:
    order = only(parse_er7(decode_er7((corpus / "hl7" / "ORM-O01-01.hl7").read_bytes())))
    resource = order.resource
    assert [(i["value"], i["type"]["coding"][0]["code"]) for i in resource["identifier"]] == [
        ("1101", "PLAC"),
        ("1201", "FILL"),
    ]
    assert resource["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "24725-4",
        "display": "CT Head",
    }
    assert resource["status"] == "active"  # ORC-5 SC: in process, scheduled
    assert resource["authoredOn"] == "2021-10-20T11:26:00+02:15"
    assert order.requester is not None
    assert order.requester["identifier"][0]["value"] == "3850"
    assert order.requester["name"] == [{"family": "ORDPROVIDER", "given": ["JONES", "A"]}]


def test_corpus_medication_order_reads_drug_dose_and_dispense(corpus: Path) -> None:
    order = only(parse_er7(decode_er7((corpus / "hl7" / "ORM-O01-06.hl7").read_bytes())))
    request = order.resource
    assert request["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/ndc",
        "code": "00047040230",
        "display": "Ampicillin 250 mg caps",
    }
    [dosage] = request["dosageInstruction"]
    assert dosage["text"] == "1 tablet by oral route 2 times daily."
    assert dosage["doseAndRate"] == [{"doseQuantity": {"value": 2, "unit": "capsule"}}]
    assert request["dispenseRequest"] == {
        "quantity": {"value": 10, "unit": "capsule"},
        "numberOfRepeatsAllowed": 12,
    }
    assert request["note"][0]["text"].startswith("Remind the patient")


def test_a_new_order_sent_with_ordered_status_cancelled_is_revoked(corpus: Path) -> None:
    order = only(parse_er7(decode_er7((corpus / "hl7" / "ORM-O01-05.hl7").read_bytes())))
    assert (order.control, order.resource["status"]) == ("NW", "revoked")


# -- status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "status_code", "kind", "expected"),
    [
        ("NW", "", "ServiceRequest", "active"),
        ("NW", "CM", "ServiceRequest", "completed"),
        ("CA", "", "ServiceRequest", "revoked"),
        ("CA", "", "MedicationRequest", "cancelled"),
        ("CA", "IP", "ServiceRequest", "revoked"),
        ("DC", "", "MedicationRequest", "stopped"),
        ("DC", "", "ServiceRequest", "revoked"),
        ("HD", "", "ServiceRequest", "on-hold"),
        ("RL", "HD", "ServiceRequest", "active"),
        ("SC", "CM", "ServiceRequest", "completed"),
        ("SC", "ER", "MedicationRequest", "entered-in-error"),
        ("SC", "", "ServiceRequest", None),
        ("SN", "", "ServiceRequest", None),
    ],
)
def test_status_from_order_control_and_order_status(
    control: str, status_code: str, kind: OrderKind, expected: str | None
) -> None:
    assert order_status(control, status_code, kind) == expected


@given(
    st.sampled_from(sorted(ORDER_CONTROLS)),
    st.sampled_from(["", *sorted(ORDER_STATUS)]),
    st.sampled_from(["ServiceRequest", "MedicationRequest"]),
)
def test_every_control_and_status_gives_a_status_of_the_fhir_value_set(
    control: str, status_code: str, kind: OrderKind
) -> None:
    status = order_status(control, status_code, kind)
    assert status is None or status in REQUEST_STATUS[kind]


def test_a_cancel_is_revoked_and_must_exist() -> None:
    order = only(message(orc("CA"), OBR))
    assert order.resource["status"] == "revoked"
    assert order.must_exist
    assert not only(message(orc("NW"), OBR)).must_exist


@pytest.mark.parametrize(
    ("segment", "location", "code"),
    [
        (orc("ZZ"), "ORC^1^1", 103),
        (orc(""), "ORC^1^1", 101),
        (orc("SC", status="NW"), "ORC^1^5", 103),
        (orc(placer="", filler=""), "ORC^1^2", 101),
    ],
)
def test_bad_order_control_fields_are_refused_naming_the_field(
    segment: str, location: str, code: int
) -> None:
    error = refusal(message(segment, OBR))
    assert err(error) == (location, code)
    assert error.hl7_ack_code == "AE"


def test_an_order_control_code_in_orc5_is_ignored_when_orc1_says_the_status() -> None:
    assert only(message(orc("NW", status="NW"), OBR)).resource["status"] == "active"


# -- structure -----------------------------------------------------------------------------


def test_order_numbers_come_from_obr_when_orc_has_none() -> None:
    order = only(message(orc(placer=""), "OBR|1|P-9^CPOE|F-9^LIS|2345-7^Glucose^LN"))
    assert [i["value"] for i in order.resource["identifier"]] == ["P-9", "F-9"]
    assert order.resource["identifier"][0]["system"] == "urn:medhub:assigning-authority:CPOE"


def test_two_details_under_one_orc_are_a_sequence_error() -> None:
    error = refusal(message(orc(), OBR, OBR))
    assert err(error) == ("OBR^2", 100)


def test_oml_prior_results_are_not_new_orders() -> None:
    mapped = map_orders(
        message(orc(placer="NEW-1^CPOE"), OBR, "PV1|1|O", orc("SC", placer="OLD-1^CPOE"), OBR)
    )
    assert [o.resource["identifier"][0]["value"] for o in mapped.orders] == ["NEW-1"]


def test_a_message_without_pid_or_orc_is_refused() -> None:
    no_pid = parse_er7(MSH.format(type="ORM^O01") + "\r" + orc() + "\r" + OBR + "\r")
    assert err(refusal(no_pid)) == ("PID^1", 100)
    assert err(refusal(message())) == ("ORC^1", 100)


def test_notes_after_the_detail_are_kept_but_not_notes_of_its_observations() -> None:
    order = only(
        message(orc(), OBR, "NTE|1||Fasting sample", "OBX|1|ST|Q1^Question^L||yes", "NTE|1||x")
    )
    assert order.resource["note"] == [{"text": "Fasting sample"}]


def test_requester_is_a_practitioner_by_xcn_id_or_a_display_name() -> None:
    npi = only(message(orc(), OBR))
    assert npi.requester is not None
    # The same XCN rule as the ADT mappers: XCN-9 is the assigning authority.
    assert npi.requester["identifier"][0] == {
        "system": "urn:medhub:assigning-authority:NPI",
        "value": "1234",
    }
    assert npi.requester_display == "DR MARCUS WELBY"
    nameless = only(message(orc(requester="^WELBY^MARCUS"), OBR))
    assert nameless.requester is None and nameless.requester_display == "MARCUS WELBY"
    fallback = only(message(orc(requester=""), OBR))
    assert fallback.requester is None and fallback.requester_display == "OLGA ORDERING"
    assert fallback.requester_location.to_er7() == "OBR^1^16^1"


def test_authored_on_without_any_offset_keeps_only_the_date() -> None:
    text = "\r".join(
        [MSH.format(type="ORM^O01").replace("20240301090000+0100", "20240301090000"), PID]
    )
    msg = parse_er7(text + "\r" + orc(authored="202403010855") + "\r" + OBR + "\r")
    assert only(msg).resource["authoredOn"] == "2024-03-01"


# -- pharmacy -------------------------------------------------------------------------------


def test_rxe_maps_to_a_medication_request_with_a_dose_range() -> None:
    rxe = (
        "RXE|^^^20240301|860975^metformin 500 mg^RXNORM|500|1000|mg|TAB|^take with food|||60|TAB|3"
    )
    order = only(message(orc(), rxe, msh9="ORM^O01^ORM_O01"))
    request = order.resource
    assert order.kind == "MedicationRequest"
    assert request["medicationCodeableConcept"]["coding"][0]["system"] == (
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    )
    mg = {"unit": "mg", "system": UCUM_SYSTEM, "code": "mg"}
    assert request["dosageInstruction"] == [
        {
            "text": "take with food",
            "doseAndRate": [
                {"doseRange": {"low": {"value": 500, **mg}, "high": {"value": 1000, **mg}}}
            ],
        }
    ]
    assert request["dispenseRequest"] == {
        "quantity": {"value": 60, "unit": "TAB"},
        "numberOfRepeatsAllowed": 3,
    }
    resource = linked(order)
    assert validate_resource(resource, expected_type="MedicationRequest") == resource


@pytest.mark.parametrize(
    ("rxo", "location", "code"),
    [
        ("RXO||2", "RXO^1^1", 101),
        ("RXO|123^Drug^NDC|two", "RXO^1^2", 102),
        ("RXO|123^Drug^NDC|2|||||||||10||1.5", "RXO^1^13", 102),
    ],
)
def test_unusable_pharmacy_fields_are_refused(rxo: str, location: str, code: int) -> None:
    error = refusal(message(orc(), rxo, msh9="ORM^O01^ORM_O01"))
    assert err(error) == (location, code)
