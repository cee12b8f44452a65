"""Appliers for orders (ORM^O01, OML^O21) to ServiceRequest / MedicationRequest."""

from __future__ import annotations

from collections.abc import Mapping

from medhub.hl7.apply_context import Applier

APPLIERS: Mapping[str, Applier] = {}
