"""Alarm limits per vital: the defaults, where each comes from, and how overrides stack.

A stream's limits are resolved once, when the detector registers it, from four
layers, each overriding the one before field by field::

    defaults (per vital, below)  <-  care unit  <-  patient  <-  device

so an ICU can lower every SpO2 limit, a COPD patient on that unit can have the
SpO2 scale 2 target range, and one pulse oximeter known to be noisy can have a
longer on-delay, without any layer restating the others.

Limits are strict: ``value > high`` is high, ``value < low`` is low, so a limit
is the last value still in range (the NEWS2 chart is written the same way).
``None`` means "no such limit". Hysteresis is in the vital's unit; the on-delay,
the rate window and the signal-lost time are in seconds; the rate limit is in
the vital's unit per minute.

Where a default is a local choice rather than a published number, the table
says so; docs/alarms.md carries the same table with its references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Final, Literal

from medhub.errors import InputError, Issue

#: Written in an override to switch a limit off (``None`` there means "inherit").
Off = Literal["off"]
OFF: Final[Off] = "off"

#: The median filter keeps at most this many samples per stream (an odd window up to 7).
MAX_MEDIAN_WINDOW: Final = 7


@dataclass(frozen=True, slots=True)
class VitalLimits:
    """The resolved rules of one stream: what the detector compiles into its arrays."""

    low: float | None = None
    high: float | None = None
    critical_low: float | None = None
    critical_high: float | None = None
    #: How far back inside a limit the value must come before the alarm ends.
    hysteresis: float = 0.0
    #: How long a low/high value must last before the alarm starts; critical limits bypass it.
    on_delay_s: float = 0.0
    #: Largest change per minute before a rate alarm, measured over ``rate_window_s``.
    rate_per_min: float | None = None
    rate_window_s: float = 60.0
    #: Running median over this many samples before any rule (1 = no filter).
    median_window: int = 1
    #: No valid sample for this long raises "signal lost" (None = never).
    signal_lost_s: float | None = None

    def validate(self) -> VitalLimits:
        """Return self, or raise :class:`InputError` naming each inconsistent field."""
        problems = []
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if isinstance(value, float) and math.isnan(value):
                problems.append(f"{name} is NaN")
        ordered = [
            ("critical_low", self.critical_low, "low", self.low),
            ("low", self.low, "high", self.high),
            ("high", self.high, "critical_high", self.critical_high),
            ("critical_low", self.critical_low, "critical_high", self.critical_high),
        ]
        for name_a, a, name_b, b in ordered:
            if a is not None and b is not None and a > b:
                problems.append(f"{name_a} ({a}) is above {name_b} ({b})")
        if self.low is not None and self.high is not None and self.low == self.high:
            problems.append(f"low and high are both {self.low}: no value is in range")
        for name in ("hysteresis", "on_delay_s", "rate_window_s"):
            if values[name] < 0:
                problems.append(f"{name} is negative")
        if self.rate_per_min is not None and self.rate_per_min < 0:
            problems.append("rate_per_min is negative")
        if self.signal_lost_s is not None and self.signal_lost_s <= 0:
            problems.append("signal_lost_s must be positive")
        window = self.median_window
        if not (1 <= window <= MAX_MEDIAN_WINDOW and window % 2 == 1):
            problems.append(f"median_window must be odd, 1..{MAX_MEDIAN_WINDOW}")
        if problems:
            raise InputError(
                "inconsistent alarm limits: " + "; ".join(problems),
                issues=[Issue(message=p) for p in problems],
            )
        return self


@dataclass(frozen=True, slots=True)
class LimitOverride:
    """One layer's changes: ``None`` inherits, :data:`OFF` switches a limit off."""

    low: float | Off | None = None
    high: float | Off | None = None
    critical_low: float | Off | None = None
    critical_high: float | Off | None = None
    hysteresis: float | None = None
    on_delay_s: float | None = None
    rate_per_min: float | Off | None = None
    rate_window_s: float | None = None
    median_window: int | None = None
    signal_lost_s: float | Off | None = None

    def apply(self, limits: VitalLimits) -> VitalLimits:
        changes: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                changes[f.name] = None if value == OFF else value
        return replace(limits, **changes)  # type: ignore[arg-type]


def _defaults() -> dict[str, VitalLimits]:
    heart = VitalLimits(
        low=50.0,
        high=110.0,
        critical_low=40.0,
        critical_high=120.0,
        hysteresis=5.0,
        on_delay_s=10.0,
        signal_lost_s=30.0,
    )
    return {
        # Critical 40/120 is medhub's founding example; 40 is NEWS2's 3-point pulse band
        # (<= 40). Low 50 / high 110: the edges of NEWS2's 0-1 point bands (41-50, 91-110).
        # On-delay 10 s: Goerges 2009, Welch 2011 (see docs/alarms.md).
        "heart-rate": heart,
        "pulse-rate": heart,
        # Low 90 %: the usual adult monitor default, below the BTS 2017 target of 94-98 %.
        # Critical 85 %: a local choice within the 84-90 % range Lansdowne 2016 simulated.
        # On-delay 15 s: Welch 2011 (a 15 s delay cut low-SpO2 alarms by about 60 %).
        "oxygen-saturation": VitalLimits(
            low=90.0,
            critical_low=85.0,
            hysteresis=2.0,
            on_delay_s=15.0,
            signal_lost_s=30.0,
        ),
        # NEWS2 respiration bands: <= 8 and >= 25 score 3 (critical), 9-11 and 21-24 score.
        "respiratory-rate": VitalLimits(
            low=12.0,
            high=20.0,
            critical_low=9.0,
            critical_high=24.0,
            hysteresis=2.0,
            on_delay_s=10.0,
            signal_lost_s=60.0,
        ),
        # NEWS2 systolic bands: <= 90 and >= 220 score 3, 91-100 scores 2; > 180 mmHg is
        # severe hypertension (ACC/AHA 2017). No on-delay: NIBP arrives every few minutes.
        "systolic-blood-pressure": VitalLimits(
            low=100.0, high=180.0, critical_low=90.0, critical_high=219.0, hysteresis=5.0
        ),
        # > 120 mmHg diastolic: hypertensive crisis (ACC/AHA 2017); low 40: local choice.
        "diastolic-blood-pressure": VitalLimits(
            low=40.0, high=110.0, critical_high=120.0, hysteresis=5.0
        ),
        # MAP >= 65 mmHg: Surviving Sepsis Campaign 2021 target; 55 and 110/130 local.
        "mean-blood-pressure": VitalLimits(
            low=65.0, high=110.0, critical_low=55.0, critical_high=130.0, hysteresis=5.0
        ),
        # NEWS2 temperature bands: <= 35.0 scores 3, 35.1-36.0 and 38.1-39.0 score 1,
        # >= 39.1 scores 2.
        "body-temperature": VitalLimits(
            low=36.0, high=38.0, critical_low=35.0, critical_high=39.0, hysteresis=0.2
        ),
        # Normal end-tidal CO2 is 35-45 mmHg; 30/50 is a local choice.
        "end-tidal-co2": VitalLimits(
            low=30.0, high=50.0, hysteresis=2.0, on_delay_s=10.0, signal_lost_s=60.0
        ),
    }


#: The default limits per vital key (medhub.clinical.vital_codes); others have none.
DEFAULT_LIMITS: Final[dict[str, VitalLimits]] = _defaults()


class LimitPolicy:
    """The override layers, and :meth:`resolve` that stacks them for one stream.

    "Unit" here is the care unit (ward, ICU), not a unit of measure.
    """

    def __init__(self, defaults: dict[str, VitalLimits] | None = None) -> None:
        self.defaults = dict(DEFAULT_LIMITS if defaults is None else defaults)
        self.care_units: dict[tuple[str, str], LimitOverride] = {}
        self.patients: dict[tuple[str, str], LimitOverride] = {}
        self.devices: dict[tuple[str, str], LimitOverride] = {}

    def set_care_unit(self, care_unit: str, vital: str, override: LimitOverride) -> None:
        self.care_units[(care_unit, vital)] = override

    def set_patient(self, patient_id: str, vital: str, override: LimitOverride) -> None:
        self.patients[(patient_id, vital)] = override

    def set_device(self, device_id: str, vital: str, override: LimitOverride) -> None:
        self.devices[(device_id, vital)] = override

    def resolve(
        self,
        vital: str,
        *,
        care_unit: str | None = None,
        patient_id: str | None = None,
        device_id: str | None = None,
    ) -> VitalLimits:
        """Defaults <- care unit <- patient <- device, validated once stacked.

        Validation is on the stacked result, not on each layer: a patient layer
        may raise ``low`` above the default ``high`` if it raises ``high`` too.
        """
        limits = self.defaults.get(vital, VitalLimits())
        layers = (
            (self.care_units, care_unit),
            (self.patients, patient_id),
            (self.devices, device_id),
        )
        for table, owner in layers:
            if owner is not None:
                override = table.get((owner, vital))
                if override is not None:
                    limits = override.apply(limits)
        return limits.validate()
