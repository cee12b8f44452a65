"""Default limits per vital and the override layers (care unit <- patient <- device)."""

from __future__ import annotations

import pytest

from medhub.cds.vital_limits import (
    DEFAULT_LIMITS,
    OFF,
    LimitOverride,
    LimitPolicy,
    VitalLimits,
)
from medhub.clinical.vital_codes import ALL_VITAL_SIGNS
from medhub.errors import InputError


def test_heart_rate_default_is_the_seed_example() -> None:
    hr = DEFAULT_LIMITS["heart-rate"]
    assert (hr.critical_low, hr.critical_high) == (40.0, 120.0)


def test_every_default_is_for_a_known_vital_and_consistent() -> None:
    known = {v.key for v in ALL_VITAL_SIGNS}
    for vital, limits in DEFAULT_LIMITS.items():
        assert vital in known
        assert limits.validate() is limits


def test_a_vital_without_defaults_has_no_limits() -> None:
    assert LimitPolicy().resolve("perfusion-index") == VitalLimits()


def test_layers_stack_unit_then_patient_then_device() -> None:
    policy = LimitPolicy()
    policy.set_care_unit("icu", "oxygen-saturation", LimitOverride(low=88, on_delay_s=20))
    policy.set_patient("p-7", "oxygen-saturation", LimitOverride(low=86, critical_low=80))
    policy.set_device("ox-3", "oxygen-saturation", LimitOverride(on_delay_s=30))
    resolved = policy.resolve(
        "oxygen-saturation", care_unit="icu", patient_id="p-7", device_id="ox-3"
    )
    assert (resolved.low, resolved.critical_low, resolved.on_delay_s) == (86, 80, 30)
    # Another patient on the same unit gets the unit's limits, the default critical.
    other = policy.resolve("oxygen-saturation", care_unit="icu", patient_id="p-8")
    assert (other.low, other.critical_low, other.on_delay_s) == (88, 85, 20)
    # Off the unit, the defaults.
    assert policy.resolve("oxygen-saturation") == DEFAULT_LIMITS["oxygen-saturation"]


def test_off_switches_a_limit_off_and_none_inherits() -> None:
    policy = LimitPolicy()
    policy.set_patient("p-1", "heart-rate", LimitOverride(high=OFF, critical_high=OFF))
    resolved = policy.resolve("heart-rate", patient_id="p-1")
    assert resolved.high is None and resolved.critical_high is None
    assert resolved.low == DEFAULT_LIMITS["heart-rate"].low


def test_stacked_limits_are_validated_with_every_problem_named() -> None:
    policy = LimitPolicy()
    policy.set_patient("p-1", "heart-rate", LimitOverride(low=130, median_window=4))
    with pytest.raises(InputError) as caught:
        policy.resolve("heart-rate", patient_id="p-1")
    messages = [issue.message for issue in caught.value.issues]
    assert any("low (130" in m for m in messages)
    assert any("median_window" in m for m in messages)


def test_a_layer_may_move_both_limits_past_the_defaults() -> None:
    policy = LimitPolicy()
    override = LimitOverride(low=130, high=150, critical_low=OFF, critical_high=OFF)
    policy.set_patient("p-1", "heart-rate", override)
    assert policy.resolve("heart-rate", patient_id="p-1").low == 130
