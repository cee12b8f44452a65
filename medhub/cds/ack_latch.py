"""An acknowledged alarm that flaps is one alarm: hold its END, swallow a quick re-START.

The detector reports each crossing as an alarm of its own, which is right for
an alarm nobody has answered. Once a nurse has acknowledged it ("I have seen
it", IEC 60601-1-8), a value hovering at the limit (SpO2 89-91 % around a
90 % limit, beyond what the hysteresis absorbs) would otherwise end the alert
and page her again with a new one at the next crossing, minutes later, for a
condition she is already handling: the repeated, non-actionable alarm that
drives alarm fatigue (Görges et al., Anesth Analg 2009;108:1546-52).

So, given the detector's ``acknowledged`` flag on an END (set by
:meth:`medhub.cds.detector.Detector.acknowledge`, which the alerts API's
acknowledgement reaches through :class:`medhub.cds.vital_watch.VitalWatch`):

* the END of an acknowledged alarm is **held** for ``silence`` instead of
  resolving the alert at once;
* a START of the same stream and condition within ``silence`` of that END
  cancels both: the acknowledged alert stays open, nothing is re-raised, and
  the caller re-acknowledges the alarm in the detector so its next END is
  held again;
* a held END whose ``silence`` has passed (by a later sample's time or by the
  clock at :meth:`AckLatch.due`) is released, and the alert resolves with
  the END's own time and value.

What is not silenced: an unacknowledged alarm; another condition (a step up
from high to critical is a new alarm and pages); and anything after
``silence``. The cost is that an acknowledged alert resolves up to
``silence`` late. Pure: event times and ``now`` in microseconds, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from medhub.cds.alarm_codes import Condition, Transition
from medhub.cds.detector import AlarmEvent


@dataclass
class Latched:
    """What one pass through the latch gives: events to apply, alarms to acknowledge again."""

    events: list[AlarmEvent] = field(default_factory=list)
    reacknowledge: list[tuple[int, Condition]] = field(default_factory=list)


class AckLatch:
    """Held ENDs of acknowledged alarms, per (stream, condition); ``silence_us`` 0 holds nothing."""

    def __init__(self, silence_us: int) -> None:
        self.silence_us = max(0, silence_us)
        self._held: dict[tuple[int, Condition], AlarmEvent] = {}

    def __len__(self) -> int:
        return len(self._held)

    def filter(self, events: Iterable[AlarmEvent]) -> Latched:
        """Pass events through in order, holding and cancelling as the module docs say."""
        out = Latched()
        for event in events:
            key = (event.stream, event.condition)
            held = self._held.get(key)
            if event.transition is Transition.END:
                if held is not None:  # cannot happen in order; never lose an END
                    out.events.append(self._held.pop(key))
                if event.acknowledged and self.silence_us > 0:
                    self._held[key] = event
                else:
                    out.events.append(event)
                continue
            if held is not None:
                del self._held[key]
                if event.time_us - held.time_us < self.silence_us:
                    out.reacknowledge.append(key)  # the acknowledged alert simply continues
                    continue
                out.events.append(held)
            out.events.append(event)
        return out

    def due(self, now_us: int) -> list[AlarmEvent]:
        """Release held ENDs whose silence has passed by ``now_us`` (oldest first)."""
        released = [e for e in self._held.values() if now_us - e.time_us >= self.silence_us]
        for event in released:
            del self._held[(event.stream, event.condition)]
        return sorted(released, key=lambda e: e.time_us)
