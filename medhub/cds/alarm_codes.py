"""The numbers the detector kernel writes into its event arrays, named.

The kernel (numba) and the pure-Python reference both speak these integers,
so that an event is a row of small numbers until :mod:`medhub.cds.detector`
turns it into an :class:`~medhub.cds.detector.AlarmEvent`.

Priorities follow IEC 60601-1-8 (alarm systems): *high* needs an immediate
response (a critical limit), *medium* a prompt one (a limit or a rapid change),
*low* awareness (a technical condition: the signal is gone).

Conditions 1-6 are the detector's (the kernel writes them). The others are
alerts from other sources that share the lifecycle, the outbox and the API:
a patient's NEWS2 band (:mod:`medhub.cds.news2_alerts`; RCP NEWS2 chart 2,
"NEWS thresholds and triggers") and alarms a device raised itself
(``devices/+/alerts``, :mod:`medhub.devices.device_alarm_payload`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class Condition(IntEnum):
    """What an alarm is about; one stream can have a limit, a rate and a signal alarm at once."""

    LOW = 1
    HIGH = 2
    CRITICAL_LOW = 3
    CRITICAL_HIGH = 4
    RATE = 5
    SIGNAL_LOST = 6
    #: NEWS2: a single parameter scores 3, aggregate below 5 ("urgent ward-based response").
    NEWS2_LOW_MEDIUM = 7
    #: NEWS2 aggregate 5-6 ("key threshold for urgent response").
    NEWS2_MEDIUM = 8
    #: NEWS2 aggregate 7 or more ("urgent or emergency response").
    NEWS2_HIGH = 9
    #: A physiological alarm the device decided itself (an arrhythmia, its own limits).
    DEVICE_PHYSIOLOGICAL = 10
    #: A technical alarm the device raised (lead off, occlusion, low battery).
    DEVICE_TECHNICAL = 11


class Transition(IntEnum):
    """Alarms are state machines: the detector reports only the edges."""

    START = 1
    END = 2


class Priority(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3


#: The priority of each condition (index = condition code; 0 unused). A device
#: alarm carries the device's own priority; the entries here are its default.
#: NEWS2: RCP chart 2 asks for an urgent response from 3 in one parameter and
#: from 5, an emergency response from 7, so low-medium and medium are prompt
#: (medium) and high is immediate (high).
PRIORITY_OF: Final[tuple[int, ...]] = (
    0,
    Priority.MEDIUM,
    Priority.MEDIUM,
    Priority.HIGH,
    Priority.HIGH,
    Priority.MEDIUM,
    Priority.LOW,
    Priority.MEDIUM,
    Priority.MEDIUM,
    Priority.HIGH,
    Priority.MEDIUM,
    Priority.LOW,
)

#: The conditions the vital-sign detector raises (the others come from NEWS2 or devices).
DETECTOR_CONDITIONS: Final = frozenset(
    {
        Condition.LOW,
        Condition.HIGH,
        Condition.CRITICAL_LOW,
        Condition.CRITICAL_HIGH,
        Condition.RATE,
        Condition.SIGNAL_LOST,
    }
)
NEWS2_CONDITIONS: Final = frozenset(
    {Condition.NEWS2_LOW_MEDIUM, Condition.NEWS2_MEDIUM, Condition.NEWS2_HIGH}
)
DEVICE_CONDITIONS: Final = frozenset({Condition.DEVICE_PHYSIOLOGICAL, Condition.DEVICE_TECHNICAL})
