"""The medication knowledge base: shipped data consistency, drug resolution, the CSV loader."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from medhub.cds.medication_checks import check_order
from medhub.cds.medication_kb_files import DATA_FILES, parse_knowledge
from medhub.cds.medication_kb_records import CLASS_PREFIX, InteractionSpec
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
    ProposedOrder,
)
from medhub.errors import ConfigurationError, InputError

SNOMED = "http://snomed.info/sct"
HEADER = "drug_a,drug_b,severity,mechanism,management,source\n"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_default_knowledge()


def rx(code: str, display: str | None = None) -> DrugRef:
    return DrugRef((DrugCode(RXNORM_SYSTEM, code, display),))


def text(value: str) -> DrugRef:
    return DrugRef((), value)


def rule_between(kb: KnowledgeBase, first: str, second: str) -> InteractionSpec:
    rules = kb.interactions_between(first, second)
    assert rules, f"no interaction between {first} and {second}"
    return rules[0]


# -- the shipped data ---------------------------------------------------------------------


def test_the_base_is_versioned_and_loaded_once(kb: KnowledgeBase) -> None:
    assert kb.version == "medhub-kb 2026.12"
    assert load_default_knowledge() is kb
    counts = kb.counts()
    assert counts["ingredients"] >= 150
    assert counts["interactions"] >= 40
    assert counts["dose_ranges"] >= 8


def test_every_fact_cites_a_source_with_text(kb: KnowledgeBase) -> None:
    assert all(source.citation.strip() for source in kb.sources.values())
    assert all(rule.citation.text.strip() for rule in kb.data.interactions)
    assert all(rule.citation.text.strip() for rule in kb.data.cross_reactivity)
    assert all(dose.citation.text.strip() for dose in kb.data.dose_ranges)
    assert "doi.org/10.1136/amiajnl-2011-000612" in (kb.sources["onc_2012"].url or "")


def test_every_interaction_names_known_drugs_or_non_empty_classes(kb: KnowledgeBase) -> None:
    for rule in kb.data.interactions:
        for term in (*rule.a, *rule.b):
            if term.startswith(CLASS_PREFIX):
                assert kb.members(term.removeprefix(CLASS_PREFIX)), term
            else:
                assert kb.ingredient(term) is not None, term
        assert rule.mechanism.strip() and rule.management.strip()


def test_no_drug_pair_is_listed_twice_with_different_severities(kb: KnowledgeBase) -> None:
    severities: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rule in kb.data.interactions:
        for a in kb.expand(rule.a):
            for b in kb.expand(rule.b):
                if a != b:
                    severities[(min(a, b), max(a, b))].add(rule.severity)
    conflicts = {pair: found for pair, found in severities.items() if len(found) > 1}
    assert conflicts == {}


def test_every_name_and_brand_resolves_to_its_own_ingredient(kb: KnowledgeBase) -> None:
    for ingredient in kb.data.ingredients:
        for name in (ingredient.name, *ingredient.synonyms):
            assert kb.resolve(text(name)) == {ingredient.rxcui}, name


def test_every_clinical_drug_code_agrees_with_its_own_display(kb: KnowledgeBase) -> None:
    """An SCD's RxCUI and its RxNorm name must give the same ingredients."""
    for product in kb.data.products:
        expected = frozenset(product.ingredients)
        if product.rxcui:
            assert kb.resolve(rx(product.rxcui)) == expected, product.name
        if product.tty == "SCD":
            assert kb.resolve(text(product.name)) == expected, product.name
        for name in product.names:
            assert kb.resolve(text(name)) == expected, name


def test_dose_ranges_name_their_ingredient(kb: KnowledgeBase) -> None:
    for dose in kb.data.dose_ranges:
        ingredient = kb.ingredient(dose.rxcui)
        assert ingredient is not None and ingredient.name == dose.name


def test_a_data_file_with_an_unknown_drug_is_refused() -> None:
    from importlib import resources

    folder = resources.files("medhub.cds").joinpath("data")
    texts = {name: folder.joinpath(name).read_text("utf-8") for name in DATA_FILES}
    texts["interactions.toml"] += (
        '\n[[interaction]]\na = ["warfarin"]\nb = ["unobtainium"]\nseverity = "major"\n'
        'mechanism = "m"\nmanagement = "m"\nsources = ["onc_2012"]\n'
    )
    with pytest.raises(ConfigurationError, match="unknown drug or class 'unobtainium'"):
        parse_knowledge(texts)


ONC_PAIRS = [
    ("amphetamine", "phenelzine"),
    ("atazanavir", "omeprazole"),
    ("febuxostat", "azathioprine"),
    ("sertraline", "selegiline"),
    ("irinotecan", "ketoconazole"),
    ("meperidine", "phenelzine"),
    ("amitriptyline", "tranylcypromine"),
    ("pimozide", "clarithromycin"),
    ("ramelteon", "fluvoxamine"),
    ("rifampin", "atazanavir"),
    ("simvastatin", "ritonavir"),
    ("ergotamine", "clarithromycin"),
    ("tizanidine", "ciprofloxacin"),
    ("tranylcypromine", "procarbazine"),
    ("sumatriptan", "isocarboxazid"),
]


@pytest.mark.parametrize(("first", "second"), ONC_PAIRS)
def test_the_onc_high_priority_pairs_are_contraindicated(
    kb: KnowledgeBase, first: str, second: str
) -> None:
    [a], [b] = kb.resolve(text(first)), kb.resolve(text(second))
    rule = rule_between(kb, a, b)
    assert rule.severity == "contraindicated"
    assert "Phansalkar" in rule.citation.text


@pytest.mark.parametrize(
    ("first", "second", "severity", "cited"),
    [
        ("warfarin", "ibuprofen", "major", "Coumadin"),
        ("warfarin", "clopidogrel", "major", "Coumadin"),
        ("warfarin", "amiodarone", "major", "amiodarone"),
        ("warfarin", "fluconazole", "major", "Coumadin"),
        ("warfarin", "sulfamethoxazole", "major", "Coumadin"),
        ("sertraline", "linezolid", "major", "26 July 2011"),
        ("fluoxetine", "tramadol", "major", "Ultram"),
        ("lovastatin", "itraconazole", "contraindicated", "2012"),
        ("lisinopril", "spironolactone", "major", "ACE"),
        ("losartan", "potassium chloride", "moderate", "ACE"),
        ("sildenafil", "isosorbide mononitrate", "contraindicated", "Viagra"),
        ("methotrexate", "trimethoprim", "major", "Methotrexate"),
        ("clopidogrel", "omeprazole", "major", "Plavix"),
        ("digoxin", "verapamil", "major", "Lanoxin"),
        ("tizanidine", "fluvoxamine", "contraindicated", "Zanaflex"),
        ("allopurinol", "mercaptopurine", "major", "allopurinol"),
        ("oxycodone", "alprazolam", "major", "31 August 2016"),
    ],
)
def test_well_known_pairs_carry_their_severity_and_source(
    kb: KnowledgeBase, first: str, second: str, severity: str, cited: str
) -> None:
    [a], [b] = kb.resolve(text(first)), kb.resolve(text(second))
    rule = rule_between(kb, a, b)
    assert rule.severity == severity
    assert cited in rule.citation.text


# -- resolution ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drug", "expected"),
    [
        (rx("11289"), {"11289"}),
        (rx("855332", "Warfarin Sodium 5 MG Oral Tablet"), {"11289"}),
        (rx("10831"), {"10180", "10829"}),
        (rx("1049221"), {"161", "7804"}),
        (text("warfarin sodium 5 MG Oral Tablet"), {"11289"}),
        (text("Amoxicillin 500 MG Oral Capsule"), {"723"}),
        (text("AMOXICILLIN 875 MG / Clavulanate 125 MG Oral Tablet"), {"723", "48203"}),
        (text("Coumadin 5mg tab"), {"11289"}),
        (text("Advil 200"), {"5640"}),
        (text("Bactrim DS"), {"10180", "10829"}),
        (text("Percocet 5/325"), {"161", "7804"}),
        (text("Co-trimoxazole 960 mg"), {"10180", "10829"}),
        (text("Isosorbide dinitrate 10 MG"), {"6058"}),
        (text("isosorbide mononitrate 30 MG ER"), {"6057"}),
        (text("Penicillin V Potassium 250 MG Oral Tablet"), {"7984"}),
    ],
)
def test_drugs_resolve_by_code_scd_min_text_and_brand(
    kb: KnowledgeBase, drug: DrugRef, expected: set[str]
) -> None:
    assert kb.resolve(drug) == expected


def test_another_code_systems_display_still_resolves(kb: KnowledgeBase) -> None:
    drug = DrugRef((DrugCode(SNOMED, "27658006", "Amoxicillin 500 MG Oral Capsule"),))
    assert kb.resolve(drug) == {"723"}


def test_a_code_of_another_system_is_not_read_as_an_rxcui(kb: KnowledgeBase) -> None:
    assert kb.resolve(DrugRef((DrugCode(SNOMED, "11289"),))) == frozenset()


def test_rxnorm_by_oid_is_rxnorm(kb: KnowledgeBase) -> None:
    drug = DrugRef((DrugCode("urn:oid:2.16.840.1.113883.6.88", "5640"),))
    assert kb.resolve(drug) == {"5640"}


def test_a_known_code_wins_over_contradicting_text(kb: KnowledgeBase) -> None:
    drug = DrugRef((DrugCode(RXNORM_SYSTEM, "11289"),), "ibuprofen")
    assert kb.resolve(drug) == {"11289"}


def test_an_unknown_code_falls_back_to_the_text(kb: KnowledgeBase) -> None:
    drug = DrugRef((DrugCode(RXNORM_SYSTEM, "99999999"),), "Zocor 20 mg")
    assert kb.resolve(drug) == {"36567"}


@pytest.mark.parametrize("name", ["Grandma's herbal tonic", "", "MG oral tablet 500", "sodium"])
def test_unknown_drugs_resolve_to_nothing(kb: KnowledgeBase, name: str) -> None:
    assert kb.resolve(text(name)) == frozenset()
    assert kb.resolve(DrugRef()) == frozenset()


@pytest.mark.parametrize(
    ("allergy", "classes"),
    [
        ("Penicillin", {"penicillin"}),
        ("PENICILLINS", {"penicillin"}),
        ("PCN", {"penicillin"}),
        ("Sulfa drugs", {"sulfonamide-antibiotic"}),
        ("NSAIDs", {"nsaid"}),
        ("ACE inhibitors", {"ace-inhibitor"}),
    ],
)
def test_allergies_recorded_as_a_class_name_resolve_to_the_class(
    kb: KnowledgeBase, allergy: str, classes: set[str]
) -> None:
    assert kb.resolve_allergy(text(allergy))[1] == classes


def test_class_lookup(kb: KnowledgeBase) -> None:
    assert {"723", "733", "7980", "7984", "8339"} <= kb.members("penicillin")
    assert kb.classes_of("1191") == {"nsaid", "antiplatelet"}
    penicillins = kb.drug_class("penicillin")
    assert penicillins is not None and penicillins.allergy_scope == "class"
    nsaids = kb.drug_class("nsaid")
    assert nsaids is not None and nsaids.allergy_scope == "member" and nsaids.therapeutic
    assert kb.members("no-such-class") == frozenset()
    assert kb.ingredient_name("11289") == "warfarin"


# -- the CSV loader -------------------------------------------------------------------------


def test_csv_pairs_are_added_to_a_new_base(kb: KnowledgeBase) -> None:
    csv = (
        HEADER
        + "# licensed from Compendium X\n"
        + "\n"
        + 'warfarin,class:macrolide,major,"CYP3A4 inhibition, raised INR",Check INR,X 2026\n'
        + "3407,21212,moderate,P-gp inhibition,Measure digoxin level,\n"
    )
    site = load_interactions_csv(csv, base=kb, source_name="site.csv")

    [rule] = site.interactions_between("11289", "18631")
    assert (rule.severity, rule.mechanism, rule.citation.text) == (
        "major",
        "CYP3A4 inhibition, raised INR",
        "X 2026",
    )
    assert site.interactions_between("3407", "21212")[0].citation.text == "site.csv"
    assert kb.interactions_between("11289", "18631") == ()
    assert len(site.data.interactions) == len(kb.data.interactions) + 2


def test_a_csv_pair_reaches_the_prescriber(kb: KnowledgeBase) -> None:
    csv = HEADER + "digoxin,clarithromycin,minor,P-gp inhibition,Measure digoxin,X 2026\n"
    site = load_interactions_csv(csv, base=kb, source_name="site.csv")
    order = ProposedOrder(text("clarithromycin 500 mg"), DailyDose(500, "mg"))
    active = [ActiveMedication("MedicationRequest/1", text("Lanoxin 0.125 mg"))]

    [finding] = check_order(site, order, active=active, allergies=[])

    assert (finding.code, finding.severity, finding.blocking) == ("DRG", "low", False)
    assert finding.source == "X 2026"


def test_a_csv_rxcui_the_base_does_not_ship_is_kept_and_resolvable_by_code(
    kb: KnowledgeBase,
) -> None:
    csv = HEADER + "warfarin,1234567,major,m,m,X\n"
    site = load_interactions_csv(csv, base=kb, source_name="site.csv")
    assert site.resolve(rx("1234567")) == {"1234567"}
    assert site.interactions_between("1234567", "11289")


@pytest.mark.parametrize(
    ("csv", "where"),
    [
        ("drug_a,drug_b,severity,mechanism,source\n", "line 1, column management"),
        ("", "line 1"),
        (HEADER + "warfarin,ibuprofen,severe,m,m,s\n", "line 2, column severity"),
        (
            HEADER + "warfarin,ibuprofen,major,m,m,s\nwarfarin,zzz,major,m,m,s\n",
            "line 3, column drug_b",
        ),
        (HEADER + "class:nope,ibuprofen,major,m,m,s\n", "line 2, column drug_a"),
        (HEADER + "Percocet,alprazolam,major,m,m,s\n", "line 2, column drug_a: 'Percocet' is a"),
        (HEADER + "alprazolam,10831,major,m,m,s\n", "line 2, column drug_b: '10831' is a"),
        (HEADER + "warfarin,ibuprofen,major,m,m\n", "line 2: expected 6 columns, found 5"),
        (HEADER + "warfarin,ibuprofen,major,m,m,s,extra\n", "line 2: expected 6 columns, found 7"),
        (HEADER + "warfarin,ibuprofen,major,,m,s\n", "line 2, column mechanism: is empty"),
        (HEADER + "\n\nwarfarin,ibuprofen,major,m,m,s,x\n", "line 4"),
    ],
)
def test_a_bad_csv_row_is_refused_naming_line_and_column(
    kb: KnowledgeBase, csv: str, where: str
) -> None:
    with pytest.raises(InputError) as raised:
        load_interactions_csv(csv, base=kb, source_name="site.csv")
    assert f"site.csv: {where}" in str(raised.value)
    assert raised.value.issues[0].expression[0].startswith("line ")


# -- speed ------------------------------------------------------------------------------------


def test_checking_twenty_active_medications_takes_well_under_a_millisecond(
    kb: KnowledgeBase,
) -> None:
    codes = ["11289", "36567", "29046", "9997", "6813", "596", "2556", "703", "3407", "7646"]
    codes += ["32968", "161", "6809", "17767", "83367", "5640", "4493", "10689", "8591", "1191"]
    active = [ActiveMedication(f"MedicationRequest/{i}", rx(c)) for i, c in enumerate(codes)]
    allergies = [AllergyRecord("AllergyIntolerance/1", text("Penicillin"), "high")]
    order = ProposedOrder(rx("21212", "clarithromycin 500 MG"), DailyDose(500, "mg"))

    best = float("inf")
    for _ in range(50):
        started = time.perf_counter()
        findings = check_order(kb, order, active=active, allergies=allergies)
        best = min(best, time.perf_counter() - started)

    assert any(f.code == "DRG" for f in findings)
    assert best < 0.001
