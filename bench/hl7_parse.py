"""HL7 v2 ER7 parse throughput on one core: medhub vs python-hl7 vs hl7apy.

Input: /work/shared/corpus/bench/oru_pcd01_7seg.hl7 (a 7-segment ORU^R01 from a
patient monitor), line ends normalised to CR. Every candidate parses the same
``str`` in the same process; each is warmed up, then timed in 3 runs of
``perf_counter`` loops (interleaved across parsers), and the best run is
reported (messages/s).

Candidates:

* medhub parse_er7 + Segment.value on every leaf: the parse plus reading every
  field/repetition/component/sub-component of every segment through the public
  accessor (unescaped), i.e. a full parse that touches all values;
* medhub parse_er7 + Segment.components on every repetition: the same values,
  read a component list at a time;
* medhub decode_er7 + parse_er7 (bytes in, lazy): what the MLLP inbound path does
  before a message is applied;
* medhub parse_er7 only (lazy: fields split, components and escapes untouched);
* python-hl7 ``hl7.parse`` (eager: splits down to sub-components, no unescaping);
* hl7apy ``parser.parse_message`` (default: finds groups, lenient validation);
  about 100x slower, so it gets ~2 s in total.

Usage: python bench/hl7_parse.py [--quick] [--file PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hl7
from _common import print_table
from hl7apy.parser import parse_message

from medhub.hl7.er7 import Message, decode_er7, parse_er7

CORPUS_FILE = Path("/work/shared/corpus/bench/oru_pcd01_7seg.hl7")
Address = tuple[int, int, int, int, int]  # segment index, field, repetition, component, sub


def leaf_addresses(message: Message) -> list[Address]:
    """Every (segment, field, repetition, component, sub-component) present in the message."""
    delims = message.delimiters
    addresses: list[Address] = []
    for index, segment in enumerate(message.segments):
        for field in range(1, len(segment.fields)):
            for rep_no, rep in enumerate(segment.repetitions(field), start=1):
                if segment.name == "MSH" and field in (1, 2):
                    addresses.append((index, field, rep_no, 1, 1))
                    continue
                for comp_no, comp in enumerate(rep.split(delims.component), start=1):
                    for sub_no in range(1, len(comp.split(delims.subcomponent)) + 1):
                        addresses.append((index, field, rep_no, comp_no, sub_no))
    return addresses


def repetition_addresses(message: Message) -> list[tuple[int, int, int]]:
    """Every (segment, field, repetition) present in the message."""
    return [
        (index, field, rep_no)
        for index, segment in enumerate(message.segments)
        for field in range(1, len(segment.fields))
        for rep_no in range(1, len(segment.repetitions(field)) + 1)
    ]


def warm_up(parse: Callable[[], object], seconds: float) -> int:
    """Run ``parse`` briefly (at least 3 times); returns a batch size for ~20 clock reads a run."""
    warm_until = time.perf_counter() + min(0.3, seconds)
    calls = 0
    while time.perf_counter() < warm_until or calls < 3:
        parse()
        calls += 1
    start = time.perf_counter()
    parse()
    one = max(time.perf_counter() - start, 1e-7)
    return max(1, int(seconds / one / 20))


def timed_run(parse: Callable[[], object], seconds: float, batch: int) -> tuple[float, int]:
    """One loop of about ``seconds``: (messages/s, messages)."""
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        for _ in range(batch):
            parse()
        done += batch
        now = time.perf_counter()
    return done / (now - start), done


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true", help="short runs (~5 s in all)")
    args.add_argument("--file", type=Path, default=CORPUS_FILE)
    options = args.parse_args()
    seconds = 0.2 if options.quick else 1.0
    slow_seconds = 0.15 if options.quick else 0.67  # hl7apy: ~2 s in all when not quick

    raw = options.file.read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    text = raw.decode("utf-8")
    first = parse_er7(text)
    leaves = leaf_addresses(first)
    reps = repetition_addresses(first)

    def medhub_leaves() -> None:
        segments = parse_er7(text).segments
        for index, field, rep, comp, sub in leaves:
            segments[index].value(field, rep, comp, sub)

    def medhub_components() -> None:
        segments = parse_er7(text).segments
        for index, field, rep in reps:
            segments[index].components(field, rep)

    def medhub_full() -> None:
        parse_er7(text).decode_all()

    def medhub_bytes() -> None:
        parse_er7(decode_er7(raw))

    def medhub_lazy() -> None:
        parse_er7(text)

    def python_hl7() -> None:
        hl7.parse(text)

    def hl7apy_parse() -> None:
        parse_message(text)

    # Sanity: the other parsers see the same message.
    assert len(hl7.parse(text)) == len(first.segments)
    assert parse_message(text).msh.msh_10.value == first.control_id

    candidates: list[tuple[str, Callable[[], None], float]] = [
        ("medhub parse_er7 + decode_all (full tree, every leaf unescaped)", medhub_full, seconds),
        ("medhub parse_er7 + Segment.value on every leaf", medhub_leaves, seconds),
        ("medhub parse_er7 + Segment.components per repetition", medhub_components, seconds),
        ("medhub decode_er7 + parse_er7 (bytes, lazy)", medhub_bytes, seconds),
        ("medhub parse_er7 only (lazy)", medhub_lazy, seconds),
        ("python-hl7 hl7.parse", python_hl7, seconds),
        ("hl7apy parser.parse_message", hl7apy_parse, slow_seconds),
    ]
    print(
        f"# hl7_parse: {options.file.name}, {len(raw)} bytes, {len(first.segments)} segments, "
        f"{len(leaves)} leaf values, {len(reps)} field repetitions"
    )
    print(
        f"# Python {platform.python_version()}, one thread (one core), {os.cpu_count()} CPUs seen,"
        f" best of 3 runs of {seconds:g} s each ({slow_seconds:g} s for hl7apy)"
    )
    # Runs are interleaved (round 1 of every parser, then round 2, ...) so that a burst of
    # load from other processes on this shared machine does not hit one parser only.
    batches = [warm_up(parse, run_seconds) for _, parse, run_seconds in candidates]
    best = [0.0] * len(candidates)
    totals = [0] * len(candidates)
    for _ in range(3):
        for index, (_, parse, run_seconds) in enumerate(candidates):
            rate, done = timed_run(parse, run_seconds, batches[index])
            best[index] = max(best[index], rate)
            totals[index] += done
    results = [(c[0], best[i], totals[i]) for i, c in enumerate(candidates)]
    reference = results[0][1]
    print_table(
        ["parser", "msgs/s", "us/msg", "vs medhub full", "msgs timed"],
        [
            (name, rate, 1e6 / rate, f"{rate / reference:.2f}x", total)
            for name, rate, total in results
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
