"""check_order: interactions, allergies, duplicate therapy, dose ranges, and their order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.cds.medication_checks import check_order
from medhub.cds.medication_doses import normalise_route, to_mg
from medhub.cds.medication_knowledge import (
    KnowledgeBase,
    load_default_knowledge,
    load_interactions_csv,
)
from medhub.cds.medication_model import (
    RXNORM_SYSTEM,
    ActiveMedication,
    AllergyRecord,
    DailyDose,
    DrugCode,
    DrugRef,
    Finding,
    ProposedOrder,
)

KB = load_default_knowledge()
HEADER = "drug_a,drug_b,severity,mechanism,management,source\n"


def rx(code: str, display: str | None = None) -> DrugRef:
    return DrugRef((DrugCode(RXNORM_SYSTEM, code, display),))


def text(value: str) -> DrugRef:
    return DrugRef((), value)


def order(
    drug: DrugRef | str,
    *,
    single_dose: DailyDose | None = None,
    daily_dose: DailyDose | None = None,
    route: str | None = None,
) -> ProposedOrder:
    return ProposedOrder(
        text(drug) if isinstance(drug, str) else drug, single_dose, daily_dose, route
    )


def taking(*drugs: DrugRef | str) -> list[ActiveMedication]:
    return [
        ActiveMedication(f"MedicationRequest/{n}", text(d) if isinstance(d, str) else d)
        for n, d in enumerate(drugs, start=1)
    ]


def allergic(
    substance: DrugRef | str, criticality: str | None = "high", *reactions: str
) -> list[AllergyRecord]:
    drug = text(substance) if isinstance(substance, str) else substance
    return [AllergyRecord("AllergyIntolerance/7", drug, criticality, reactions)]


def check(
    proposed: ProposedOrder,
    active: list[ActiveMedication] | None = None,
    allergies: list[AllergyRecord] | None = None,
    kb: KnowledgeBase = KB,
) -> list[Finding]:
    return check_order(kb, proposed, active=active or [], allergies=allergies or [])


def only(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, findings
    return matching[0]


# -- drug interactions (DRG) -------------------------------------------------------------


def test_ibuprofen_for_a_patient_on_warfarin_is_a_blocking_major_interaction() -> None:
    active = taking(rx("855332", "Warfarin Sodium 5 MG Oral Tablet"))
    finding = only(check(order(rx("5640", "Ibuprofen 400 MG Oral Tablet")), active), "DRG")

    assert (finding.kind, finding.severity, finding.blocking) == ("drug-interaction", "high", True)
    assert finding.interaction_severity == "major"
    assert finding.implicated == ("MedicationRequest/1",)
    assert "Major interaction" in finding.summary
    assert "Ibuprofen" in finding.summary and "Warfarin" in finding.summary
    assert finding.mechanism and finding.mechanism in finding.detail
    assert finding.management and finding.management in finding.detail
    assert finding.source and "Coumadin" in finding.source
    assert finding.ingredients == ("11289", "5640")


def test_a_contraindicated_class_level_pair_blocks() -> None:
    finding = only(check(order("clarithromycin 500 mg"), taking("simvastatin 40 mg")), "DRG")
    assert (finding.severity, finding.interaction_severity) == ("high", "contraindicated")
    assert finding.source_url == "https://doi.org/10.1136/amiajnl-2011-000612"


def test_a_moderate_interaction_warns_without_blocking() -> None:
    finding = only(check(order("amlodipine 5 mg"), taking("Zocor 20 mg")), "DRG")
    assert (finding.severity, finding.blocking) == ("moderate", False)
    assert "20 mg" in finding.detail


def test_a_minor_interaction_is_low() -> None:
    csv = f"{HEADER}metformin,digoxin,minor,m,n,X\n"
    site = load_interactions_csv(csv, base=KB, source_name="site.csv")
    finding = only(check(order("metformin 500 mg"), taking("digoxin"), kb=site), "DRG")
    assert (finding.severity, finding.interaction_severity) == ("low", "minor")


def test_brand_names_sent_as_text_interact() -> None:
    findings = check(order("Advil 200 mg"), taking("Coumadin 5 mg"))
    assert only(findings, "DRG").interaction_severity == "major"


def test_each_ingredient_of_a_combination_product_is_checked() -> None:
    findings = check(order("alprazolam 0.5 mg"), taking("Percocet 5/325"))
    finding = only(findings, "DRG")
    assert finding.ingredients == ("596", "7804")
    assert "(alprazolam + oxycodone)" in finding.summary
    assert "FDA" in (finding.source or "")


def test_one_finding_per_medication_the_most_severe_rule_wins() -> None:
    csv = f"{HEADER}warfarin,ibuprofen,minor,Site note,n,X\n"
    site = load_interactions_csv(csv, base=KB, source_name="site.csv")
    finding = only(check(order("ibuprofen"), taking("warfarin"), kb=site), "DRG")
    assert finding.interaction_severity == "major"
    assert "Also listed: [minor] Site note" in finding.detail


def test_interactions_with_each_active_medication_are_reported_separately() -> None:
    findings = check(order("clarithromycin"), taking("simvastatin", "pimozide", "paracetamol"))
    drg = [f for f in findings if f.code == "DRG"]
    assert sorted(f.implicated[0] for f in drg) == ["MedicationRequest/1", "MedicationRequest/2"]


ALL_INGREDIENTS = sorted(i.rxcui for i in KB.data.ingredients)
INTERACTING = sorted(
    {(a, b) for rule in KB.data.interactions for a in KB.expand(rule.a) for b in KB.expand(rule.b)}
)
PAIRS = st.one_of(
    st.sampled_from(INTERACTING),
    st.tuples(st.sampled_from(ALL_INGREDIENTS), st.sampled_from(ALL_INGREDIENTS)),
)


def _interaction_facts(found: list[Finding]) -> set[tuple[object, ...]]:
    return {
        (f.interaction_severity, f.mechanism, f.source, f.ingredients)
        for f in found
        if f.code == "DRG"
    }


@settings(max_examples=300, deadline=None)
@given(PAIRS)
def test_interactions_are_symmetric(pair: tuple[str, str]) -> None:
    """A active + B ordered finds the same interaction as B active + A ordered."""
    first, second = pair
    forward = check(order(rx(first)), taking(rx(second)))
    backward = check(order(rx(second)), taking(rx(first)))
    assert _interaction_facts(forward) == _interaction_facts(backward)
    expected = bool(KB.interactions_between(first, second)) and first != second
    assert bool(_interaction_facts(forward)) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(ALL_INGREDIENTS), min_size=1, max_size=8))
def test_findings_are_sorted_blocking_first_then_by_severity(codes: list[str]) -> None:
    rank = {"high": 0, "moderate": 1, "low": 2}
    found = check(order(rx(codes[0])), taking(*(rx(c) for c in codes[1:])), allergic("Penicillin"))
    keys = [(not f.blocking, rank[f.severity]) for f in found]
    assert keys == sorted(keys)
    again = check(order(rx(codes[0])), taking(*(rx(c) for c in reversed(codes[1:]))))
    assert {f.summary for f in again} == {f.summary for f in found if f.code != "ALGY"}


# -- allergies (ALGY) ----------------------------------------------------------------------


def test_amoxicillin_for_a_penicillin_allergy_recorded_as_text_blocks() -> None:
    finding = only(check(order(rx("723", "amoxicillin")), allergies=allergic("Penicillin")), "ALGY")
    assert (finding.severity, finding.blocking) == ("high", True)
    assert finding.implicated == ("AllergyIntolerance/7",)
    assert "amoxicillin" in finding.summary.lower() and "penicillin" in finding.summary.lower()


def test_an_allergy_to_one_penicillin_covers_the_others() -> None:
    finding = only(check(order("ampicillin 500 mg"), allergies=allergic(rx("723"))), "ALGY")
    assert finding.severity == "high"


def test_the_same_ingredient_in_a_combination_matches_a_coded_allergy() -> None:
    finding = only(
        check(order("Augmentin 875"), allergies=allergic(rx("7980", "Penicillin G"))), "ALGY"
    )
    assert finding.severity == "high"


@pytest.mark.parametrize(
    ("criticality", "severity"),
    [("high", "high"), (None, "high"), ("unable-to-assess", "high"), ("low", "moderate")],
)
def test_a_direct_match_blocks_unless_the_allergy_is_of_low_criticality(
    criticality: str | None, severity: str
) -> None:
    finding = only(
        check(order("amoxicillin"), allergies=allergic("Penicillins", criticality)), "ALGY"
    )
    assert finding.severity == severity
    assert finding.blocking == (severity == "high")


def test_reactions_are_shown_to_the_prescriber() -> None:
    finding = only(
        check(order("amoxicillin"), allergies=allergic("Penicillin", "high", "anaphylaxis")), "ALGY"
    )
    assert "anaphylaxis" in finding.detail


@pytest.mark.parametrize(
    ("drug", "severity"), [("cephalexin 500 mg", "moderate"), ("meropenem 1 g IV", "low")]
)
def test_penicillin_cross_reactivity_warns_at_a_lower_severity(drug: str, severity: str) -> None:
    finding = only(check(order(drug), allergies=allergic("Penicillin")), "ALGY")
    assert (finding.severity, finding.blocking) == (severity, False)
    assert "cross-reactivity" in finding.summary.lower()
    assert "2022 practice parameter" in (finding.source or "")


def test_sulfonamide_antibiotics_cross_match_and_sulfonamide_diuretics_do_not() -> None:
    assert only(check(order("Bactrim DS"), allergies=allergic("Sulfa")), "ALGY").severity == "high"
    sulfa_record = allergic(rx("10180", "sulfamethoxazole"))
    assert only(check(order("sulfadiazine"), allergies=sulfa_record), "ALGY").severity == "high"
    assert check(order("hydrochlorothiazide 25 mg"), allergies=allergic("Sulfa")) == []


def test_aspirin_allergy_warns_against_other_nsaids() -> None:
    finding = only(check(order("ibuprofen 400 mg"), allergies=allergic("Aspirin")), "ALGY")
    assert (finding.severity, finding.blocking) == ("moderate", False)
    assert only(check(order("ibuprofen"), allergies=allergic("NSAIDs")), "ALGY").severity == "high"


def test_one_cephalosporin_allergy_warns_against_another() -> None:
    finding = only(check(order("cefazolin 1 g"), allergies=allergic("Keflex")), "ALGY")
    assert finding.severity == "moderate"


def test_an_unrelated_or_unknown_allergy_says_nothing() -> None:
    assert check(order("warfarin"), allergies=allergic("Penicillin")) == []
    assert check(order("amoxicillin"), allergies=allergic("Shellfish")) == []


# -- duplicate therapy (DUPTHPY) --------------------------------------------------------------


def test_paracetamol_on_top_of_percocet_is_a_blocking_duplicate() -> None:
    finding = only(check(order("Tylenol 500 mg"), taking("Percocet 5/325")), "DUPTHPY")
    assert (finding.severity, finding.blocking) == ("high", True)
    assert "acetaminophen" in finding.summary
    assert not [f for f in check(order("Tylenol"), taking("Percocet")) if f.code == "DRG"]


@pytest.mark.parametrize(
    ("first", "second", "label"),
    [
        ("ibuprofen", "naproxen", "NSAIDs"),
        ("sertraline", "escitalopram", "SSRIs"),
        ("simvastatin", "atorvastatin", "statins"),
        ("lisinopril", "ramipril", "ACE inhibitors"),
    ],
)
def test_two_drugs_of_one_class_are_a_moderate_duplicate(
    first: str, second: str, label: str
) -> None:
    finding = only(check(order(first), taking(second)), "DUPTHPY")
    assert (finding.severity, finding.blocking) == ("moderate", False)
    assert label in finding.summary


def test_aspirin_with_clopidogrel_is_not_called_a_duplicate() -> None:
    assert [
        f for f in check(order("aspirin 81 mg"), taking("clopidogrel")) if f.code == "DUPTHPY"
    ] == []


# -- dose range (DOSEH / DOSEL) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("single", "daily", "code"),
    [
        (DailyDose(1, "g"), DailyDose(4, "g"), None),
        (DailyDose(1000, "mg"), DailyDose(4000, "mg"), None),
        (DailyDose(1.5, "g"), DailyDose(3, "g"), "DOSEH"),
        (DailyDose(1, "g"), DailyDose(5, "g"), "DOSEH"),
        (DailyDose(1, "g"), DailyDose(5000, "mg/d"), "DOSEH"),
        (DailyDose(1_000_000, "ug"), DailyDose(4_000_000, "mcg"), None),
        (DailyDose(2, "{tbl}"), DailyDose(20, "{tbl}"), None),
        (DailyDose(10, "mL"), None, None),
    ],
)
def test_paracetamol_dose_units_are_converted_to_mg(
    single: DailyDose, daily: DailyDose | None, code: str | None
) -> None:
    findings = check(order("acetaminophen", single_dose=single, daily_dose=daily))
    assert [f.code for f in findings] == ([code] if code else [])


def test_a_microgram_dose_is_checked_in_mg() -> None:
    finding = only(check(order("amlodipine", daily_dose=DailyDose(15000, "mcg"))), "DOSEH")
    assert "15 mg a day exceeds 10 mg a day" in finding.summary
    assert check(order("amlodipine", daily_dose=DailyDose(10000, "\u00b5g"))) == []


def test_weekly_methotrexate_is_accepted() -> None:
    weekly = order(
        rx("105585", "Methotrexate 2.5 MG Oral Tablet"),
        single_dose=DailyDose(15, "mg"),
        daily_dose=DailyDose(15 / 7, "mg"),
        route="Oral route",
    )
    assert check(weekly) == []


def test_daily_methotrexate_is_blocked_even_at_a_small_dose() -> None:
    daily = order(
        "methotrexate 2.5 mg tablet",
        single_dose=DailyDose(2.5, "mg"),
        daily_dose=DailyDose(2.5, "mg"),
    )
    finding = only(check(daily), "DOSEH")
    assert finding.blocking
    assert "ordered every day" in finding.summary
    assert "once a week" in finding.detail


def test_too_much_weekly_methotrexate_is_blocked() -> None:
    heavy = order(
        "methotrexate", single_dose=DailyDose(40, "mg"), daily_dose=DailyDose(40 / 7, "mg")
    )
    finding = only(check(heavy), "DOSEH")
    assert "40 mg a week exceeds 30 mg a week" in finding.detail


def test_high_dose_intravenous_methotrexate_is_outside_the_oral_range() -> None:
    infusion = order(
        "methotrexate",
        single_dose=DailyDose(5, "g"),
        daily_dose=DailyDose(5, "g"),
        route="Intravenous route",
    )
    assert check(infusion) == []


def test_a_dose_below_the_documented_minimum_is_low() -> None:
    finding = only(check(order("atorvastatin", daily_dose=DailyDose(5, "mg"))), "DOSEL")
    assert (finding.severity, finding.blocking) == ("low", False)


def test_combination_products_are_not_dose_checked() -> None:
    assert check(order("Vicoprofen", single_dose=DailyDose(5000, "mg"))) == []


def test_dose_helpers() -> None:
    assert to_mg(DailyDose(0.5, "g")) == 500
    assert to_mg(DailyDose(250, "ug")) == 0.25
    assert to_mg(DailyDose(1, "mg/kg")) is None
    assert normalise_route("PO") == normalise_route("26643006") == "oral"
    assert normalise_route(None) is None


# -- what cannot be checked ---------------------------------------------------------------------


def test_an_unknown_order_gives_no_findings_and_resolves_to_nothing() -> None:
    unknown = order("Grandma's herbal tonic", single_dose=DailyDose(5, "g"))
    assert check(unknown, taking("warfarin"), allergic("Penicillin")) == []
    assert KB.resolve(unknown.drug) == frozenset()


def test_an_unknown_active_medication_does_not_hide_the_others() -> None:
    findings = check(order("ibuprofen"), taking("Grandma's herbal tonic", "warfarin"))
    assert only(findings, "DRG").implicated == ("MedicationRequest/2",)


def test_findings_come_blocking_first() -> None:
    findings = check(
        order("ibuprofen", single_dose=DailyDose(800, "mg"), daily_dose=DailyDose(4, "g")),
        taking("naproxen", "warfarin"),
        allergic("Aspirin"),
    )
    assert [(f.code, f.severity) for f in findings] == [
        ("DRG", "high"),
        ("DOSEH", "high"),
        ("ALGY", "moderate"),
        ("DUPTHPY", "moderate"),
    ]
