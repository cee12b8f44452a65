"""Which devices one ``devices`` process takes when the stream is partitioned (pure).

An MQTT 5 shared subscription hands each *message* to any consumer of the
group, so with several consumers one monitor's samples are split between
processes, and so is the detector's per-stream state (persistence, signal
lost, the acknowledged-alarm latch). A partition gives each *device* to one
process instead: every process subscribes to the whole stream without a
share group and keeps the devices whose id hashes to its index, acknowledging
the others' messages unread (their owner receives its own copy). The price
is that every process receives every message, and a partition whose process
is down waits for it at the broker (its session queues the messages) instead
of failing over.

``MEDHUB_MQTT__PARTITION=k/N``: this process is partition ``k`` of ``N``
(0-based). ``k`` may be given as a name ending in ``-k``, such as the pod
name of a StatefulSet (``medhub-devices-1/3``), so one setting serves every
replica.

**Nothing is skipped on trust.** A message acked unread is lost unless its
owner is really there, so a process skips other partitions' devices only
while :func:`covered` holds for the claims every partitioned process renews
in the database (:mod:`medhub.devices.partition_claims`): all live claims
agree on ``N`` and together hold every index. Otherwise (a partition not
running, N being changed replica by replica, a typo) it takes every device:
the sample store drops the copies another process also stores, so the cost
of doubt is work, never data.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from medhub.errors import ConfigurationError

_FORM: Final = re.compile(r"^(?:.*-)?(\d+)/(\d+)$")


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition ``index`` of ``count``: the devices whose CRC-32 of the id is ``index``."""

    index: int
    count: int

    def owns(self, device_id: str) -> bool:
        """Stable across processes, restarts and Python versions (not ``hash()``)."""
        return zlib.crc32(device_id.encode()) % self.count == self.index


def parse_partition(text: str) -> Partition:
    """``"1/3"`` or ``"medhub-devices-1/3"`` -> Partition(1, 3); ConfigurationError otherwise."""
    match = _FORM.match(text.strip())
    if match is None:
        raise ConfigurationError(
            f"MEDHUB_MQTT__PARTITION={text!r}: expected k/N, e.g. 0/2 or medhub-devices-0/2"
        )
    index, count = int(match.group(1)), int(match.group(2))
    if not 0 <= index < count:
        raise ConfigurationError(
            f"MEDHUB_MQTT__PARTITION={text!r}: the index must be 0 to {count - 1} for {count}"
        )
    return Partition(index, count)


@dataclass(frozen=True, slots=True)
class Claim:
    """A process's statement, renewed while it runs: it takes partition ``index`` of ``count``."""

    client_id: str
    index: int
    count: int
    renewed_at: datetime


def covered(
    claims: Iterable[Claim], mine: Partition, *, now: datetime, stale_after: timedelta
) -> bool:
    """Whether the live claims split the stream into ``mine.count`` parts, every part held.

    A claim not renewed within ``stale_after`` is a process that is gone (or
    cut off): its devices would be skipped by everyone, so the stream is not
    covered. A live claim with another count (N changing) also uncovers it.
    """
    live = [c for c in claims if now - c.renewed_at <= stale_after]
    if any(c.count != mine.count for c in live):
        return False
    return {c.index for c in live} == set(range(mine.count))


class PartitionGate:
    """What the MQTT decoder asks per message: keep this device's messages?

    Takes every device until :attr:`covered` is set (by the claim renewal of
    :mod:`medhub.wiring_devices`), and again as soon as it is cleared.
    """

    def __init__(self, partition: Partition) -> None:
        self.partition = partition
        #: Set and cleared by one thread, read by the decoder: a plain bool is enough.
        self.covered = False

    def owns(self, device_id: str) -> bool:
        return not self.covered or self.partition.owns(device_id)
