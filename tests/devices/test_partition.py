"""Partitioning the device stream between ``devices`` processes: every device has one owner."""

from __future__ import annotations

import pytest

from medhub.devices.partition import Partition, parse_partition
from medhub.errors import ConfigurationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0/2", Partition(0, 2)),
        ("1/2", Partition(1, 2)),
        (" 2/3 ", Partition(2, 3)),
        ("medhub-devices-1/2", Partition(1, 2)),
        ("ward-7-devices-0/4", Partition(0, 4)),
        ("0/1", Partition(0, 1)),
    ],
)
def test_a_partition_is_k_of_n_or_a_pod_name_ending_in_k(text: str, expected: Partition) -> None:
    assert parse_partition(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2/2", "0 to 1"),
        ("5/3", "0 to 2"),
        ("1/0", "0 to -1"),
        ("1", "expected k/N"),
        ("a/b", "expected k/N"),
        ("medhub-devices/2", "expected k/N"),
        ("1/2/3", "expected k/N"),
        ("", "expected k/N"),
    ],
)
def test_a_wrong_partition_is_refused_saying_what_was_expected(text: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        parse_partition(text)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_every_device_has_exactly_one_owner_and_the_load_is_spread(count: int) -> None:
    devices = [f"mon-{n:04d}" for n in range(3000)] + ["", "ü-monitor", "a/b"]
    partitions = [Partition(k, count) for k in range(count)]
    owners = [[p.index for p in partitions if p.owns(d)] for d in devices]
    assert all(len(o) == 1 for o in owners)
    share = [sum(o == [k] for o in owners) for k in range(count)]
    assert min(share) > 0.8 * len(devices) / count


def test_a_device_keeps_its_owner_across_processes() -> None:
    """Not ``hash()``: that differs per process (PYTHONHASHSEED) and would move devices."""
    import subprocess
    import sys

    code = "from medhub.devices.partition import Partition as P; print(P(1, 3).owns('mon-7'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed},
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert runs == {f"{Partition(1, 3).owns('mon-7')}\n"}
