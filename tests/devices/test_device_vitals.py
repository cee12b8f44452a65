"""The device view of medhub.clinical.vital_codes: names, aliases, codes, units."""

from __future__ import annotations

import pytest

from medhub.clinical.vital_codes import (
    ALL_VITAL_SIGNS,
    DEVICE_VITAL_SIGNS,
    PHYSICAL_RANGES,
    VITAL_ALIASES,
    VITAL_SIGNS,
    accepted_units,
    device_vital,
    device_vital_for_mdc,
    mdc_matches,
    unit_conversion,
    vital_for_mdc,
)


def test_the_hl7_lookups_are_unchanged_by_the_device_extras() -> None:
    heart_rate = vital_for_mdc("149530")
    assert heart_rate is not None and heart_rate.key == "heart-rate"
    assert all(v not in VITAL_SIGNS for v in DEVICE_VITAL_SIGNS)


def test_every_vital_has_a_physical_range_and_units_and_unique_names() -> None:
    names: list[str] = []
    for vital in ALL_VITAL_SIGNS:
        assert vital.key in PHYSICAL_RANGES
        assert vital.ucum in accepted_units(vital.ucum)
        names += [vital.key, *VITAL_ALIASES.get(vital.key, ())]
    assert len(names) == len(set(names))
    assert set(VITAL_ALIASES) <= {v.key for v in ALL_VITAL_SIGNS}


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("heart-rate", "heart-rate"),
        ("HR", "heart-rate"),
        (" Pulse_Rate ", "pulse-rate"),
        ("nibp sys", "systolic-blood-pressure"),
        ("SpO2", "oxygen-saturation"),
        ("EtCO2", "end-tidal-co2"),
    ],
)
def test_names_and_aliases(name: str, key: str) -> None:
    vital = device_vital(name)
    assert vital is not None and vital.key == key


@pytest.mark.parametrize("name", ["", "heart", "sao2", "glucose", "hr2"])
def test_unknown_names(name: str) -> None:
    assert device_vital(name) is None


def test_for_devices_the_oximeter_pulse_code_names_pulse_rate() -> None:
    pulse = device_vital_for_mdc("MDC_PULS_OXIM_PULS_RATE")
    assert pulse is not None and pulse.key == "pulse-rate"
    assert pulse.loinc_codings()[0]["code"] == "8867-4"  # still a FHIR heart-rate Observation
    ecg = device_vital_for_mdc("147842")
    assert ecg is not None and ecg.key == "heart-rate"
    assert mdc_matches(ecg, "149530") and not mdc_matches(ecg, "150456")


@pytest.mark.parametrize(
    ("canonical", "unit", "value", "expected"),
    [
        ("Cel", "[degF]", 212.0, 100.0),
        ("Cel", "K", 273.15, 0.0),
        ("mm[Hg]", "kPa", 13.3322, 100.0),
        ("/min", "/s", 2.0, 120.0),
        ("/min", "bpm", 60.0, 60.0),
        ("%", "{%}", 50.0, 50.0),
    ],
)
def test_pure_unit_conversions(canonical: str, unit: str, value: float, expected: float) -> None:
    conversion = unit_conversion(canonical, unit)
    assert conversion is not None
    factor, offset = conversion
    assert value * factor + offset == pytest.approx(expected)


@pytest.mark.parametrize(
    ("canonical", "unit"),
    [("%", "1"), ("mm[Hg]", "%"), ("Cel", "C"), ("/min", "Hz?"), ("/min", "mg"), ("kg", "kg")],
)
def test_what_is_not_a_pure_conversion_is_refused(canonical: str, unit: str) -> None:
    assert unit_conversion(canonical, unit) is None
