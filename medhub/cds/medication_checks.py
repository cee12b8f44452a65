"""Medication-safety checks of one proposed order: pure functions over the knowledge base.

:func:`check_order` compares the order with the patient's active medications
and recorded allergies and returns :class:`Finding` values (HL7 v3 ActCode for
``DetectedIssue.code``):

* ``DRG`` drug interaction, per active medication, ingredient and class level.
  Severity: contraindicated/major -> high (blocks), moderate -> moderate, minor
  -> low. When several rules cover the pair, the most severe is reported (ties:
  the more specific, then the earlier rule), the others are mentioned.
* ``ALGY`` allergy. A direct match -- same ingredient, a class the allergy names
  ("Penicillins", "Sulfa"), or another member of a class where an allergy to one
  is an allergy to all (penicillins, sulfonamide antibiotics) -- is high and
  blocks, unless the record's criticality is ``low`` (FHIR: not expected to be
  life-threatening), which makes it moderate: an intolerance recorded as low
  should warn, not stop every order. Unknown or ``unable-to-assess`` criticality
  blocks. Cross-reactivity (penicillin -> cephalosporin ...) takes the rule's
  severity (moderate or low) and never blocks on its own.
* ``DUPTHPY`` duplicate therapy: an ingredient the patient already takes is high
  (this is how paracetamol in two products is caught); the same therapeutic class
  (two NSAIDs, two SSRIs ...) is moderate.
* ``DOSEH`` / ``DOSEL`` dose range, see :mod:`medhub.cds.medication_doses`.

An order, medication or allergy the knowledge base cannot resolve gives no
finding; :meth:`KnowledgeBase.resolve` returns an empty set for it so the caller
can say the order was not checked. The caller must leave the order's own
predecessor (the MedicationRequest a renewal replaces) out of ``active``.

Findings are sorted: blocking first, then by severity, then kind (allergy,
interaction, dose, duplicate), then code, implicated records and summary, so the
same input always gives the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from medhub.cds.medication_doses import dose_findings
from medhub.cds.medication_kb_records import (
    INTERACTION_RANK,
    ISSUE_RANK,
    ISSUE_SEVERITY_OF,
    CrossReactivity,
)
from medhub.cds.medication_knowledge import KnowledgeBase
from medhub.cds.medication_model import (
    ActiveMedication,
    AllergyRecord,
    DrugRef,
    Finding,
    FindingKind,
    IssueSeverity,
    ProposedOrder,
)

_KIND_ORDER: Final[dict[FindingKind, int]] = {
    "allergy": 0,
    "drug-interaction": 1,
    "dose-range": 2,
    "duplicate-therapy": 3,
}


def check_order(
    kb: KnowledgeBase,
    order: ProposedOrder,
    *,
    active: Sequence[ActiveMedication],
    allergies: Sequence[AllergyRecord],
) -> list[Finding]:
    """Every problem with ``order`` for this patient, most serious first (see module doc)."""
    ordered = kb.resolve(order.drug)
    if not ordered:
        return []
    findings: list[Finding] = []
    for medication in active:
        theirs = kb.resolve(medication.drug)
        if not theirs:
            continue
        interaction = _interaction(kb, order, ordered, medication, theirs)
        if interaction is not None:
            findings.append(interaction)
        duplicate = _duplicate(kb, order, ordered, medication, theirs)
        if duplicate is not None:
            findings.append(duplicate)
    for allergy in allergies:
        found = _allergy(kb, order, ordered, allergy)
        if found is not None:
            findings.append(found)
    findings.extend(dose_findings(kb, order, ordered))
    return sorted(findings, key=_sort_key)


def _sort_key(finding: Finding) -> tuple[bool, int, int, str, tuple[str, ...], str]:
    return (
        not finding.blocking,
        -ISSUE_RANK[finding.severity],
        _KIND_ORDER[finding.kind],
        finding.code,
        finding.implicated,
        finding.summary,
    )


def _names(kb: KnowledgeBase, rxcuis: Iterable[str]) -> str:
    names = sorted(kb.ingredient_name(rxcui) for rxcui in rxcuis)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _label(kb: KnowledgeBase, drug: DrugRef, ingredients: frozenset[str]) -> str:
    """The drug as sent (text, else display); a bare code is shown by its ingredient names."""
    if drug.text or any(code.display for code in drug.codes) or not ingredients:
        return drug.label()
    return _names(kb, ingredients)


def _interaction(
    kb: KnowledgeBase,
    order: ProposedOrder,
    ordered: frozenset[str],
    medication: ActiveMedication,
    theirs: frozenset[str],
) -> Finding | None:
    matched: dict[int, tuple[str, str]] = {}
    for mine in sorted(ordered):
        for other in sorted(theirs):
            if mine != other:
                for index in kb.interaction_rule_ids(mine, other):
                    matched.setdefault(index, (mine, other))
    if not matched:
        return None
    rules = kb.data.interactions

    def rank(index: int) -> tuple[int, int, int]:
        return (INTERACTION_RANK[rules[index].severity], rules[index].specificity, -index)

    best = max(matched, key=rank)
    rule = rules[best]
    mine, other = matched[best]
    ours, their = kb.ingredient_name(mine), kb.ingredient_name(other)
    label, other_label = _label(kb, order.drug, ordered), _label(kb, medication.drug, theirs)
    pair = ""
    if ours.lower() not in label.lower() or their.lower() not in other_label.lower():
        pair = f" ({ours} + {their})"
    detail = f"{rule.mechanism} {rule.management}"
    others = sorted((i for i in matched if i != best), key=rank, reverse=True)
    if others:
        detail += " Also listed: " + " ".join(
            f"[{rules[i].severity}] {rules[i].mechanism}" for i in others
        )
    return Finding(
        kind="drug-interaction",
        severity=ISSUE_SEVERITY_OF[rule.severity],
        code="DRG",
        summary=(f"{rule.severity.capitalize()} interaction: {label} with {other_label}{pair}"),
        detail=detail,
        implicated=(medication.reference,),
        interaction_severity=rule.severity,
        mechanism=rule.mechanism,
        management=rule.management,
        source=rule.citation.text,
        source_url=rule.citation.url,
        ingredients=tuple(sorted((mine, other))),
    )


def _duplicate(
    kb: KnowledgeBase,
    order: ProposedOrder,
    ordered: frozenset[str],
    medication: ActiveMedication,
    theirs: frozenset[str],
) -> Finding | None:
    label, other_label = _label(kb, order.drug, ordered), _label(kb, medication.drug, theirs)
    shared = ordered & theirs
    if shared:
        return Finding(
            kind="duplicate-therapy",
            severity="high",
            code="DUPTHPY",
            summary=(
                f"Duplicate therapy: {label} and {other_label} both contain {_names(kb, shared)}"
            ),
            detail=(
                "The patient already takes this ingredient; a second order doubles the dose "
                "unless the first is stopped."
            ),
            implicated=(medication.reference,),
            ingredients=tuple(sorted(shared)),
        )
    classes = []
    for name in sorted(kb.classes_of_all(ordered) & kb.classes_of_all(theirs)):
        drug_class = kb.drug_class(name)
        if drug_class is not None and drug_class.therapeutic:
            classes.append(drug_class.label)
    if not classes:
        return None
    return Finding(
        kind="duplicate-therapy",
        severity="moderate",
        code="DUPTHPY",
        summary=f"Duplicate therapy: {label} and {other_label} are both {', '.join(classes)}",
        detail=(
            "Two drugs of the same therapeutic class add side effects, usually without "
            "added benefit; check that both are intended."
        ),
        implicated=(medication.reference,),
        ingredients=tuple(sorted(ordered | theirs)),
    )


def _allergy(
    kb: KnowledgeBase, order: ProposedOrder, ordered: frozenset[str], allergy: AllergyRecord
) -> Finding | None:
    allergens, named = kb.resolve_allergy(allergy.substance)
    if not allergens and not named:
        return None
    member_of = kb.classes_of_all(allergens)
    whole_class = {
        name
        for name in member_of
        if (found := kb.drug_class(name)) is not None and found.allergy_scope == "class"
    }
    label = _label(kb, order.drug, ordered)
    recorded = f"{label}: recorded allergy to {_label(kb, allergy.substance, allergens)}"
    reactions = f" Recorded reactions: {', '.join(allergy.reactions)}." if allergy.reactions else ""
    shared = ordered & allergens
    classes = sorted(kb.classes_of_all(ordered) & (named | whole_class))
    if shared or classes:
        reason = (
            f"same ingredient: {_names(kb, shared)}" if shared else _member(kb, ordered, classes[0])
        )
        low = (allergy.criticality or "").strip().lower() == "low"
        severity: IssueSeverity = "moderate" if low else "high"
        return Finding(
            kind="allergy",
            severity=severity,
            code="ALGY",
            summary=f"Allergy: {recorded} ({reason})",
            detail=(
                f"Criticality of the recorded allergy: {allergy.criticality or 'not recorded'}."
                f"{reactions}"
            ),
            implicated=(allergy.reference,),
            ingredients=tuple(sorted(shared or ordered)),
        )
    rule = _cross_rule(kb, named | member_of, kb.classes_of_all(ordered))
    if rule is None:
        return None
    return Finding(
        kind="allergy",
        severity=rule.severity,
        code="ALGY",
        summary=f"Possible cross-reactivity: {recorded} ({_member(kb, ordered, rule.drug_class)})",
        detail=f"{rule.note}{reactions}",
        implicated=(allergy.reference,),
        source=rule.citation.text,
        source_url=rule.citation.url,
        ingredients=tuple(sorted(ordered)),
    )


def _member(kb: KnowledgeBase, ordered: frozenset[str], class_name: str) -> str:
    """``"ampicillin is one of the penicillins"``."""
    group = kb.drug_class(class_name)
    inside = ordered & kb.members(class_name)
    verb = "is" if len(inside) == 1 else "are"
    return f"{_names(kb, inside)} {verb} one of the {group.label if group else class_name}"


def _cross_rule(
    kb: KnowledgeBase, allergy_classes: frozenset[str], order_classes: frozenset[str]
) -> CrossReactivity | None:
    best: CrossReactivity | None = None
    for allergy_class in sorted(allergy_classes):
        for drug_class in sorted(order_classes):
            rule = kb.cross_reactivity(allergy_class, drug_class)
            if rule is not None and (
                best is None or ISSUE_RANK[rule.severity] > ISSUE_RANK[best.severity]
            ):
                best = rule
    return best
