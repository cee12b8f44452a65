"""Which patient a device was attached to, and when (pure; no database).

A sample belongs to the patient the device was bound to *at the sample's
time*, not when it arrived: a monitor moved from bed 3 to bed 4 keeps
sending for a while from its buffer, and those late samples are bed 3's.
A binding is a half-open interval ``[start, end)``; ``end`` is None while it
lasts. Bindings of one device never overlap, so a time has at most one patient.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime

from medhub.errors import ConflictError, InputError, Issue


@dataclass(frozen=True, slots=True)
class Binding:
    device_id: str
    patient_id: str
    start: datetime
    end: datetime | None = None

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


class BindingTimeline:
    """The bindings of one device in time order, answering "whose was it at t?"."""

    def __init__(self, bindings: list[Binding] | None = None) -> None:
        self._bindings = sorted(bindings or [], key=lambda b: b.start)
        self._starts = [b.start for b in self._bindings]

    @property
    def bindings(self) -> list[Binding]:
        return list(self._bindings)

    def patient_at(self, moment: datetime) -> str | None:
        """The patient bound at ``moment``, or None if the device was unbound then."""
        index = bisect.bisect_right(self._starts, moment) - 1
        if index < 0:
            return None
        binding = self._bindings[index]
        return binding.patient_id if binding.covers(moment) else None

    def current(self) -> Binding | None:
        """The open binding (no end), if any."""
        if self._bindings and self._bindings[-1].end is None:
            return self._bindings[-1]
        return None

    def check_new(self, binding: Binding) -> None:
        """Refuse a binding that would overlap an existing one (409 names the other binding).

        The open binding is not an overlap: binding a device to a new patient
        ends the previous binding at the new start (see :func:`rebind`).
        """
        if binding.end is not None and binding.end <= binding.start:
            message = "a binding must end after it starts"
            raise InputError(message, [Issue(message, expression=("end",))])
        for existing in self._bindings:
            if existing.end is None and existing.start < binding.start:
                continue  # will be closed at binding.start
            overlaps = (binding.end is None or existing.start < binding.end) and (
                existing.end is None or binding.start < existing.end
            )
            if overlaps:
                raise ConflictError(
                    f"device {binding.device_id} is bound to Patient/{existing.patient_id} from "
                    f"{existing.start.isoformat()}"
                    + (f" to {existing.end.isoformat()}" if existing.end else " on")
                    + "; end that binding first or choose another start"
                )
