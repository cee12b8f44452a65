"""The numbers the detector kernel writes into its event arrays, named.

The kernel (numba) and the pure-Python reference both speak these integers,
so that an event is a row of small numbers until :mod:`medhub.cds.detector`
turns it into an :class:`~medhub.cds.detector.AlarmEvent`.

Priorities follow IEC 60601-1-8 (alarm systems): *high* needs an immediate
response (a critical limit), *medium* a prompt one (a limit or a rapid change),
*low* awareness (a technical condition: the signal is gone).
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


class Transition(IntEnum):
    """Alarms are state machines: the detector reports only the edges."""

    START = 1
    END = 2


class Priority(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3


#: The priority of each condition (index = condition code; 0 unused).
PRIORITY_OF: Final[tuple[int, ...]] = (
    0,
    Priority.MEDIUM,
    Priority.MEDIUM,
    Priority.HIGH,
    Priority.HIGH,
    Priority.MEDIUM,
    Priority.LOW,
)
