"""The medication-safety vocabulary: what a check is asked about and what it finds.

These are plain values so the checks (:mod:`medhub.cds.medication_checks`)
stay pure: the FHIR side (:mod:`medhub.cds.medication_fhir`) turns
MedicationRequest and AllergyIntolerance resources into them, and turns a
:class:`Finding` back into a DetectedIssue, an OperationOutcome issue or a
CDS Hooks card. No I/O, no clock.

Severities follow FHIR R4 ``DetectedIssue.severity`` (high | moderate | low);
interaction severities keep the knowledge base's four levels
(contraindicated | major | moderate | minor), the scale the ONC high-priority
list and most commercial compendia use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

RXNORM_SYSTEM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"

FindingKind = Literal["drug-interaction", "allergy", "duplicate-therapy", "dose-range"]
IssueSeverity = Literal["high", "moderate", "low"]
InteractionSeverity = Literal["contraindicated", "major", "moderate", "minor"]


@dataclass(frozen=True, slots=True)
class DrugCode:
    """One coding of a drug as it was sent (RxNorm or another system) with its display."""

    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class DrugRef:
    """A drug as prescribed or recorded: its codings and free text (either may be absent)."""

    codes: tuple[DrugCode, ...] = ()
    text: str | None = None

    def label(self) -> str:
        """A name for people: the text, else the first display, else the first code."""
        if self.text:
            return self.text
        for code in self.codes:
            if code.display:
                return code.display
        return self.codes[0].code if self.codes else "unnamed drug"


@dataclass(frozen=True, slots=True)
class DailyDose:
    """A dose as an amount per day in a unit (``mg``), computed from dose and timing."""

    amount: float
    unit: str


@dataclass(frozen=True, slots=True)
class ProposedOrder:
    """The prescription being checked."""

    drug: DrugRef
    single_dose: DailyDose | None = None
    daily_dose: DailyDose | None = None
    route: str | None = None


@dataclass(frozen=True, slots=True)
class ActiveMedication:
    """A medication the patient takes now; ``reference`` is ``MedicationRequest/{id}``."""

    reference: str
    drug: DrugRef


@dataclass(frozen=True, slots=True)
class AllergyRecord:
    """A recorded allergy or intolerance; ``reference`` is ``AllergyIntolerance/{id}``.

    ``criticality`` is FHIR's (low | high | unable-to-assess). Refuted and
    entered-in-error records never reach the checks.
    """

    reference: str
    substance: DrugRef
    criticality: str | None = None
    reactions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with a proposed order, precise enough for a DetectedIssue or a card.

    ``code`` is the HL7 v3 ActCode for ``DetectedIssue.code`` (DRG drug
    interaction, ALGY allergy, DUPTHPY duplicate therapy, DOSEH/DOSEL high/low
    dose). ``implicated`` names the patient's records involved
    (``MedicationRequest/7``, ``AllergyIntolerance/3``). ``blocking`` findings
    stop a prescription unless the prescriber overrides them with a reason.
    """

    kind: FindingKind
    severity: IssueSeverity
    code: str
    summary: str
    detail: str
    implicated: tuple[str, ...] = ()
    interaction_severity: InteractionSeverity | None = None
    mechanism: str | None = None
    management: str | None = None
    source: str | None = None
    source_url: str | None = None
    ingredients: tuple[str, ...] = field(default=())

    @property
    def blocking(self) -> bool:
        """High-severity findings block the order unless overridden."""
        return self.severity == "high"
