"""A patient's NEWS2 now, from the sample store and the charted Observations.

:class:`News2Service` reads the newest sample of each NEWS2 vital
(:func:`medhub.timeseries.latest.latest_samples`) and the newest charted
Observation of each parameter (one small FHIR search per parameter, newest
first; the codes are in :mod:`medhub.cds.news2_inputs`), then assesses them
(:func:`medhub.cds.news2_assessment.assess`). Reads only: the NEWS2 alerts
are :mod:`medhub.cds.news2_alerts`, the API is ``GET
/api/v1/patients/{id}/news2``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from medhub.cds.news2 import NEWS2_VITALS
from medhub.cds.news2_assessment import News2Assessment, assess
from medhub.cds.news2_inputs import (
    LOINC_O2_CONCENTRATION,
    LOINC_O2_FLOW,
    NEWS2_SYSTEM,
    SNOMED_ACVPU,
    SNOMED_SYSTEM,
    USABLE_STATUSES,
    VITAL_SIGNS_CATEGORY,
    Reading,
    ScaleReading,
    observation_readings,
    sample_readings,
)
from medhub.clinical.vital_codes import LOINC_SYSTEM
from medhub.fhir.search import parse_search
from medhub.fhir.sql_store import SqlResources, SqlResourceStore
from medhub.fhir.write_rules import utc_now
from medhub.timeseries.latest import latest_samples
from medhub.timeseries.sample_store import SampleStore

#: How many of the newest Observations per search are looked at (one may be unusable).
_NEWEST: Final = 5


def _loinc(*codes: str) -> str:
    return ",".join(f"{LOINC_SYSTEM}|{code}" for code in codes)


#: One search per parameter: (the parameter, its criteria). Vitals need the vital-signs category.
_SEARCHES: Final[tuple[tuple[str, tuple[tuple[str, str], ...]], ...]] = (
    ("respiratory_rate", (("combo-code", _loinc("9279-1")), ("category", VITAL_SIGNS_CATEGORY))),
    ("spo2", (("combo-code", _loinc("59408-5", "2708-6")), ("category", VITAL_SIGNS_CATEGORY))),
    ("systolic_bp", (("combo-code", _loinc("8480-6")), ("category", VITAL_SIGNS_CATEGORY))),
    ("pulse", (("combo-code", _loinc("8867-4")), ("category", VITAL_SIGNS_CATEGORY))),
    ("temperature", (("combo-code", _loinc("8310-5")), ("category", VITAL_SIGNS_CATEGORY))),
    (
        "consciousness",
        (("code", f"{SNOMED_SYSTEM}|{SNOMED_ACVPU},{NEWS2_SYSTEM}|consciousness"),),
    ),
    (
        "on_oxygen",
        (
            (
                "combo-code",
                f"{_loinc(LOINC_O2_FLOW, LOINC_O2_CONCENTRATION)},{NEWS2_SYSTEM}|air-or-oxygen",
            ),
        ),
    ),
    ("spo2_scale", (("code", f"{NEWS2_SYSTEM}|spo2-scale"),)),
)
_DEVICE_VITALS: Final = tuple(v for vitals in NEWS2_VITALS.values() for v in vitals)


class News2Service:
    """Assesses NEWS2 for one patient at a time; ``samples`` None: charted values only."""

    def __init__(
        self,
        store: SqlResourceStore,
        samples: SampleStore | None,
        *,
        max_age: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.samples = samples
        self.max_age = max_age
        self._clock = clock

    def assess(
        self, patient_id: str, *, now: datetime | None = None, require_patient: bool = False
    ) -> News2Assessment:
        """The patient's NEWS2 at ``now`` (default: the clock).

        ``require_patient``: a patient medhub does not hold is a
        :class:`~medhub.errors.NotFoundError` (the API's 404), not an
        assessment with everything missing.
        """
        moment = self._clock() if now is None else now
        readings: list[Reading] = []
        if self.samples is not None:
            latest = latest_samples(self.samples, patient_id, _DEVICE_VITALS, until=moment)
            readings += sample_readings(latest.values())
        charted, scale = self._charted(patient_id, moment, require_patient=require_patient)
        readings += charted
        return assess(patient_id, readings, now=moment, max_age=self.max_age, scale=scale)

    def _charted(
        self, patient_id: str, moment: datetime, *, require_patient: bool
    ) -> tuple[list[Reading], ScaleReading | None]:
        readings: list[Reading] = []
        scale: ScaleReading | None = None
        with self.store.session() as session:
            resources = SqlResources(session)
            if require_patient:
                resources.read("Patient", patient_id)
            for parameter, criteria in _SEARCHES:
                query = parse_search(
                    "Observation",
                    [
                        ("subject", f"Patient/{patient_id}"),
                        *criteria,
                        ("status", ",".join(USABLE_STATUSES)),
                        ("date", f"le{moment.isoformat()}"),
                        ("_sort", "-date"),
                    ],
                )
                query.count, query.with_total = _NEWEST, False
                for stored in resources.search(query).resources:
                    found, charted_scale = observation_readings(
                        stored.resource, source=f"Observation/{stored.id}"
                    )
                    wanted = [r for r in found if r.parameter == parameter]
                    if wanted or charted_scale is not None:
                        readings += wanted
                        scale = scale or charted_scale
                        break  # the newest usable Observation of this parameter
        return readings, scale
