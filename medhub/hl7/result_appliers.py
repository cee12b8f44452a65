"""Appliers for observation results (ORU^R01: lab and IHE PCD-01 device data)."""

from __future__ import annotations

from collections.abc import Mapping

from medhub.hl7.apply_context import Applier

APPLIERS: Mapping[str, Applier] = {}
