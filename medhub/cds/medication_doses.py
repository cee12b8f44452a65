"""Dose-range checks: amounts in mass units against the knowledge base's adult limits.

Only amounts that are a mass convertible to mg are checked (UCUM ``g``, ``mg``,
``ug``; also ``mcg`` and ``µg`` as people write them, and a ``/d`` or ``/day``
suffix on a daily amount). Tablets, mL, units or mg/kg say nothing about the
ingredient mass without the product strength or the patient's weight, so they
produce no finding rather than a guess.

``ProposedOrder.daily_dose`` is the average amount per day over the timing's
period (FHIR R4 Timing: dose x frequency / period), so a 15 mg once-weekly
methotrexate order is 15 mg single and about 2.14 mg a day. A drug marked
``weekly_only`` whose daily amount is at least one whole dose is being given
every day: the error that has killed patients on methotrexate, flagged whatever
the amount. Only single-ingredient orders are checked: the dose of a
combination product does not say how much of each ingredient it is.
"""

from __future__ import annotations

from typing import Final

from medhub.cds.medication_kb_records import DoseRange
from medhub.cds.medication_knowledge import KnowledgeBase
from medhub.cds.medication_model import DailyDose, Finding, IssueSeverity, ProposedOrder

_MG_PER_UNIT: Final = {
    "g": 1000.0,
    "gram": 1000.0,
    "grams": 1000.0,
    "mg": 1.0,
    "milligram": 1.0,
    "milligrams": 1.0,
    "ug": 0.001,
    "mcg": 0.001,
    "\u00b5g": 0.001,  # micro sign, as typed
    "\u03bcg": 0.001,  # Greek small mu, as typed
    "microgram": 0.001,
    "micrograms": 0.001,
}
_PER_DAY: Final = ("/d", "/day", "/24.h", "/24h", "/(24.h)")
_ORAL: Final = frozenset({"oral", "po", "p.o.", "by mouth", "per os", "26643006", "oral route"})
#: Allow for rounding of amounts converted between units (e.g. 0.1 g = 100.00000001 mg).
_TOLERANCE: Final = 1e-6


def to_mg(dose: DailyDose | None) -> float | None:
    """The amount in mg, or None when the unit is not a mass (``"1 tablet"``, ``"5 mL"``)."""
    if dose is None:
        return None
    unit = dose.unit.strip().strip("{}[]").lower()
    for suffix in _PER_DAY:
        unit = unit.removesuffix(suffix)
    factor = _MG_PER_UNIT.get(unit.strip())
    return None if factor is None else dose.amount * factor


def normalise_route(route: str | None) -> str | None:
    """``"Oral route"``, ``"PO"`` or SNOMED ``26643006`` -> ``"oral"``; other routes lower-cased."""
    if route is None or not route.strip():
        return None
    text = route.strip().lower()
    if text in _ORAL or text.startswith("oral"):
        return "oral"
    return text


def _fmt(amount: float) -> str:
    return f"{amount:,.4g}" if amount < 1000 else f"{amount:,.0f}"


def _violations(limits: DoseRange, single: float | None, daily: float | None) -> list[str]:
    found = []
    if limits.weekly_only and single is not None and daily is not None:
        if daily >= single - _TOLERANCE:
            found.append(f"it is ordered every day, but {limits.name} is taken once a week")
    if single is not None and limits.max_single_mg is not None:
        if single > limits.max_single_mg + _TOLERANCE:
            found.append(
                f"a single dose of {_fmt(single)} mg exceeds {_fmt(limits.max_single_mg)} mg"
            )
    if daily is not None and limits.max_daily_mg is not None:
        if daily > limits.max_daily_mg + _TOLERANCE:
            found.append(f"{_fmt(daily)} mg a day exceeds {_fmt(limits.max_daily_mg)} mg a day")
    if daily is not None and limits.max_weekly_mg is not None:
        weekly = daily * 7
        if weekly > limits.max_weekly_mg + _TOLERANCE:
            found.append(f"{_fmt(weekly)} mg a week exceeds {_fmt(limits.max_weekly_mg)} mg a week")
    return found


def _finding(
    limits: DoseRange, severity: IssueSeverity, code: str, summary: str, detail: str
) -> Finding:
    return Finding(
        kind="dose-range",
        severity=severity,
        code=code,
        summary=summary,
        detail=detail,
        source=limits.citation.text,
        source_url=limits.citation.url,
        ingredients=(limits.rxcui,),
    )


def dose_findings(
    kb: KnowledgeBase, order: ProposedOrder, ingredients: frozenset[str]
) -> list[Finding]:
    """DOSEH (high) and DOSEL (low) findings for a single-ingredient order; see the docstring."""
    if len(ingredients) != 1:
        return []
    (rxcui,) = ingredients
    single, daily = to_mg(order.single_dose), to_mg(order.daily_dose)
    if single is None and daily is None:
        return []
    route = normalise_route(order.route)
    label = order.drug.label()
    findings = []
    for limits in kb.dose_ranges(rxcui):
        if not limits.applies_to(route):
            continue
        too_high = _violations(limits, single, daily)
        if too_high:
            summary = f"Dose too high: {label}: {too_high[0]}"
            joined = "; ".join(too_high)
            detail = f"{joined[0].upper()}{joined[1:]}. {limits.note}"
            findings.append(_finding(limits, "high", "DOSEH", summary, detail))
        minimum = limits.min_daily_mg
        if daily is not None and minimum is not None and daily < minimum - _TOLERANCE:
            summary = (
                f"Dose low: {label}: {_fmt(daily)} mg a day is below "
                f"the usual minimum of {_fmt(minimum)} mg"
            )
            findings.append(_finding(limits, "low", "DOSEL", summary, limits.note))
    return findings
