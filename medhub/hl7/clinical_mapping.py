"""AL1 -> AllergyIntolerance and DG1 -> Condition (pure).

AL1 (HL7 v2.5.1 §3.4.6), following the v2-to-FHIR guide's ``AL1[AllergyIntolerance]``
map: clinicalStatus ``active`` (the guide assigns it: constraint ait-1 needs it
and AL1 cannot say otherwise); AL1-2 allergen type -> ``category`` and ``type``
(ConceptMaps AllergenType[AllergyIntoleranceCategory] and AllergyType: DA
medication, FA food, EA/PA/LA environment, AA biologic); AL1-3 -> ``code``;
AL1-4 severity -> ``criticality`` (ConceptMap AllergySeverity: SV high, MI low;
the guide leaves MO unmapped, medhub maps it to low because a moderate reaction
is by definition not life-threatening, which is what "low" means) and, when a
reaction is sent, ``reaction.severity``; AL1-5 -> ``reaction.manifestation.text``;
AL1-6 identification date -> ``onsetDateTime``.

DG1 (§6.5.2), following ``DG1[Condition]``: DG1-3 -> ``code`` (its coding system
from DG1-3.3, else the deprecated DG1-2 coding method: I10, I9 ...), DG1-4 ->
``code.text``, DG1-5 -> ``onsetDateTime``, DG1-16 -> ``asserter``, DG1-19 ->
``recordedDate``, DG1-20 -> ``identifier``, DG1-21 ``D`` (delete) ->
``verificationStatus`` entered-in-error; category ``encounter-diagnosis``.

Neither segment carries an id medhub can rely on (DG1-20 is optional and rare,
AL1 has none), so the appliers recognise a re-sent allergy or diagnosis by
patient, code and (for a diagnosis) encounter: :func:`same_code` is that rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from medhub.errors import Hl7Location, Issue, MissingDataError
from medhub.hl7.datatype_mapping import (
    clean,
    codeable_concept,
    coding_system,
    ei_identifier,
    fhir_datetime,
)
from medhub.hl7.er7 import Segment
from medhub.hl7.identity import merge_resource
from medhub.hl7.patient_mapping import hl7_date
from medhub.hl7.practitioner_mapping import MappedPerson, xcn_person

ALLERGY_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

_CATEGORY: Final = {
    "DA": "medication",
    "FA": "food",
    "EA": "environment",
    "PA": "environment",
    "LA": "environment",
    "AA": "biologic",
}
_ALLERGY_TYPES: Final = frozenset({"DA", "FA", "MA", "EA", "AA", "PA", "LA"})
_CRITICALITY: Final = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}
_SEVERITY: Final = {"SV": "severe", "MO": "moderate", "MI": "mild"}


@dataclass(frozen=True, slots=True)
class MappedCondition:
    """A Condition from one DG1, and the diagnosing clinician still to be resolved."""

    resource: dict[str, Any]
    asserter: MappedPerson | None
    location: Hl7Location


def _missing(text: str, location: Hl7Location) -> MissingDataError:
    return MissingDataError(text, [Issue(text, location=location, hl7_error_code=101)])


def _reaction(al1: Segment, severity: str) -> list[dict[str, Any]]:
    manifestations = [
        {"text": text}
        for text in (clean(al1.value(5, rep)) for rep in range(1, len(al1.repetitions(5)) + 1))
        if text
    ]
    if not manifestations:
        return []
    reaction: dict[str, Any] = {"manifestation": manifestations}
    if severity in _SEVERITY:
        reaction["severity"] = _SEVERITY[severity]
    return [reaction]


def al1_allergy(al1: Segment, *, sequence: int, patient: dict[str, Any]) -> dict[str, Any]:
    """One AL1 as an AllergyIntolerance of ``patient`` (a Reference).

    Raises :class:`MissingDataError` when AL1-3 (the allergen, required) is empty.
    """
    code = codeable_concept(al1, 3)
    if code is None:
        raise _missing("AL1-3 (allergen) is empty", Hl7Location("AL1", sequence, 3))
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
    }
    allergen_type = clean(al1.value(2)).upper()
    if allergen_type in _ALLERGY_TYPES:
        allergy["type"] = "allergy"
    if allergen_type in _CATEGORY:
        allergy["category"] = [_CATEGORY[allergen_type]]
    severity = clean(al1.value(4)).upper()
    if severity in _CRITICALITY:
        allergy["criticality"] = _CRITICALITY[severity]
    allergy["code"] = code
    allergy["patient"] = patient
    identified = clean(al1.value(6))
    if identified:
        allergy["onsetDateTime"] = hl7_date(identified, Hl7Location("AL1", sequence, 6))
    reaction = _reaction(al1, severity)
    if reaction:
        allergy["reaction"] = reaction
    return allergy


def dg1_condition(
    dg1: Segment,
    *,
    sequence: int,
    subject: dict[str, Any],
    encounter: dict[str, Any] | None,
    default_offset: str | None = None,
) -> MappedCondition:
    """One DG1 as an encounter-diagnosis Condition of ``subject`` in ``encounter``.

    Raises :class:`MissingDataError` when DG1-3 and DG1-4 are both empty: a
    diagnosis without a code or a description says nothing.
    """
    code = codeable_concept(dg1, 3, default_system=coding_system(dg1.value(2)), text=dg1.value(4))
    if code is None:
        raise _missing("DG1-3 (diagnosis code) is empty", Hl7Location("DG1", sequence, 3))
    condition: dict[str, Any] = {"resourceType": "Condition"}
    identifier = ei_identifier(dg1, 20)
    if identifier is not None:
        condition["identifier"] = [identifier]
    if clean(dg1.value(21)).upper() == "D":
        condition["verificationStatus"] = {
            "coding": [{"system": CONDITION_VERIFICATION, "code": "entered-in-error"}]
        }
    condition["category"] = [
        {
            "coding": [
                {
                    "system": CONDITION_CATEGORY,
                    "code": "encounter-diagnosis",
                    "display": "Encounter Diagnosis",
                }
            ]
        }
    ]
    condition["code"] = code
    condition["subject"] = subject
    if encounter is not None:
        condition["encounter"] = encounter
    for field, element in ((5, "onsetDateTime"), (19, "recordedDate")):
        value = clean(dg1.value(field))
        if value:
            condition[element] = fhir_datetime(
                value, Hl7Location("DG1", sequence, field), default_offset=default_offset
            )
    return MappedCondition(
        condition, xcn_person(dg1, 16, sequence=sequence), Hl7Location("DG1", sequence)
    )


def merge_condition(existing: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """HL7 update semantics (:func:`~medhub.hl7.identity.merge_resource`), keeping FHIR con-5.

    A Condition marked entered-in-error (DG1-21 ``D``) must carry no clinicalStatus.
    """
    merged = merge_resource(existing, incoming)
    status = (merged.get("verificationStatus") or {}).get("coding") or [{}]
    if status[0].get("code") == "entered-in-error":
        merged.pop("clinicalStatus", None)
    return merged


def _first_coding(concept: Any) -> tuple[str, str] | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if coding.get("code"):
            return str(coding.get("system", "")), str(coding["code"])
    return None


def same_code(a: Any, b: Any) -> bool:
    """Whether two CodeableConcepts name the same thing: first coding, else the text."""
    first_a, first_b = _first_coding(a), _first_coding(b)
    if first_a is not None or first_b is not None:
        return first_a == first_b
    text_a = clean(str((a or {}).get("text", ""))).casefold()
    return bool(text_a) and text_a == clean(str((b or {}).get("text", ""))).casefold()


def code_token(concept: dict[str, Any]) -> tuple[str, str] | None:
    """(system, code) of the first coding, the token a search for this concept uses."""
    return _first_coding(concept)
