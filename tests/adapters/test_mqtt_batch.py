"""Merging decoded MQTT batches for one store call (the consumer's group commit)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from medhub.adapters.mqtt_batch import Decoded, merge


def filled(tag: str) -> Decoded:
    """A batch with one distinct stand-in in every list and one count per device."""
    values: dict[str, Any] = {}
    for item in fields(Decoded):
        default = getattr(Decoded(), item.name)
        values[item.name] = (
            {tag: 1, "shared": 2} if isinstance(default, dict) else [(tag, item.name)]
        )
    return Decoded(**values)


def test_merged_batches_keep_every_field_in_order_and_add_the_counts() -> None:
    merged = merge([filled("a"), filled("b"), filled("c")])
    for item in fields(Decoded):
        value = getattr(merged, item.name)
        if isinstance(value, dict):
            assert value == {"a": 1, "b": 1, "c": 1, "shared": 6}, item.name
        else:
            assert value == [("a", item.name), ("b", item.name), ("c", item.name)], item.name


def test_a_single_batch_is_passed_through() -> None:
    only = filled("a")
    assert merge([only]) is only
