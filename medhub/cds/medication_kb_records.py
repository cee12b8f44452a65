"""The facts a medication knowledge base is made of, as plain frozen values.

:mod:`medhub.cds.medication_kb_files` reads them from the packaged TOML files,
:mod:`medhub.cds.medication_kb_csv` reads a site's licensed interaction pairs,
and :class:`medhub.cds.medication_knowledge.KnowledgeBase` indexes them. Drugs
are identified by RxNorm ingredient RxCUIs; in interaction rules a term is
either such an RxCUI or ``class:<name>``.

Severity scales: interactions keep the four levels of the ONC high-priority list
and most compendia (contraindicated | major | moderate | minor); the checks map
them onto FHIR ``DetectedIssue.severity`` (high | moderate | low) with
:data:`ISSUE_SEVERITY_OF`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from medhub.cds.medication_model import InteractionSeverity, IssueSeverity

CLASS_PREFIX: Final = "class:"
AllergyScope = Literal["class", "member"]

INTERACTION_SEVERITIES: Final[tuple[InteractionSeverity, ...]] = get_args(InteractionSeverity)
ISSUE_SEVERITIES: Final[tuple[IssueSeverity, ...]] = get_args(IssueSeverity)

#: contraindicated and major block (FHIR "high"); moderate warns; minor informs.
ISSUE_SEVERITY_OF: Final[dict[InteractionSeverity, IssueSeverity]] = {
    "contraindicated": "high",
    "major": "high",
    "moderate": "moderate",
    "minor": "low",
}

#: Larger is worse; used to pick the most severe of several matching rules.
INTERACTION_RANK: Final[dict[InteractionSeverity, int]] = {
    "contraindicated": 3,
    "major": 2,
    "moderate": 1,
    "minor": 0,
}
ISSUE_RANK: Final[dict[IssueSeverity, int]] = {"high": 2, "moderate": 1, "low": 0}
_INTERACTION_BY_TEXT: Final[dict[str, InteractionSeverity]] = {s: s for s in INTERACTION_SEVERITIES}
_ISSUE_BY_TEXT: Final[dict[str, IssueSeverity]] = {s: s for s in ISSUE_SEVERITIES}


def interaction_severity(text: str) -> InteractionSeverity | None:
    """``"major"`` -> ``"major"``; anything not on the four-level scale -> None."""
    return _INTERACTION_BY_TEXT.get(text)


def issue_severity(text: str) -> IssueSeverity | None:
    """``"moderate"`` -> ``"moderate"``; anything but high | moderate | low -> None."""
    return _ISSUE_BY_TEXT.get(text)


@dataclass(frozen=True, slots=True)
class Source:
    """A public document a fact comes from: a paper, a label, an FDA communication."""

    id: str
    citation: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Citation:
    """The source text and link a finding shows (several sources joined with ``"; "``)."""

    text: str
    url: str | None = None

    @classmethod
    def of(cls, sources: tuple[Source, ...]) -> Citation:
        urls = [source.url for source in sources if source.url]
        return cls("; ".join(source.citation for source in sources), urls[0] if urls else None)


@dataclass(frozen=True, slots=True)
class DrugClass:
    """A group of ingredients.

    ``therapeutic``: two members at once is duplicate therapy. ``allergy_scope``
    ``"class"``: an allergy to one member counts as an allergy to every member
    (penicillins, sulfonamide antibiotics); ``"member"``: other members only
    cross-react, if a cross-reactivity rule says so.
    """

    name: str
    label: str
    therapeutic: bool = False
    allergy_scope: AllergyScope = "member"
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ingredient:
    """An RxNorm ingredient (TTY IN) with its classes and other names (brands, salts)."""

    rxcui: str
    name: str
    classes: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Product:
    """A clinical drug (SCD), multiple-ingredient concept (MIN) or brand of a combination.

    ``rxcui`` is None for a brand known only by name (``names``).
    """

    name: str
    ingredients: tuple[str, ...]
    rxcui: str | None = None
    tty: str | None = None
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InteractionSpec:
    """An interaction as written: terms are RxCUIs or ``class:<name>``; either order."""

    a: tuple[str, ...]
    b: tuple[str, ...]
    severity: InteractionSeverity
    mechanism: str
    management: str
    citation: Citation
    origin: str = "medhub"

    @property
    def specificity(self) -> int:
        """How many sides name ingredients only (2 = a drug pair): breaks severity ties."""
        return sum(not any(t.startswith(CLASS_PREFIX) for t in side) for side in (self.a, self.b))


@dataclass(frozen=True, slots=True)
class CrossReactivity:
    """An allergy to ``allergy_class`` warns, at ``severity``, against ``drug_class``."""

    allergy_class: str
    drug_class: str
    severity: IssueSeverity
    note: str
    citation: Citation


@dataclass(frozen=True, slots=True)
class DoseRange:
    """Adult limits in mg for one ingredient; see ``data/doses.toml`` for the meaning."""

    rxcui: str
    name: str
    note: str
    citation: Citation
    routes: tuple[str, ...] = ()
    max_single_mg: float | None = None
    max_daily_mg: float | None = None
    min_daily_mg: float | None = None
    max_weekly_mg: float | None = None
    weekly_only: bool = False

    def applies_to(self, route: str | None) -> bool:
        """Ranges are per route; an order without a route is checked against every range."""
        return not self.routes or route is None or route in self.routes


@dataclass(frozen=True, slots=True)
class KnowledgeData:
    """Everything a knowledge base is built from, before indexing."""

    version: str
    sources: tuple[Source, ...]
    classes: tuple[DrugClass, ...]
    ingredients: tuple[Ingredient, ...]
    products: tuple[Product, ...]
    interactions: tuple[InteractionSpec, ...]
    cross_reactivity: tuple[CrossReactivity, ...]
    dose_ranges: tuple[DoseRange, ...]
