"""A site's licensed drug-drug interactions as CSV, checked row by row.

medhub ships only interactions with a public source. Hospitals usually license a
commercial compendium; its pairs come in through this format (UTF-8, comma
separated, RFC 4180 quoting, one header line)::

    drug_a,drug_b,severity,mechanism,management,source
    warfarin,class:nsaid,major,Additive bleeding risk,Avoid or monitor INR,Compendium X 2026-10
    36567,21212,contraindicated,CYP3A4 inhibition,Do not combine,Compendium X 2026-10

``drug_a`` / ``drug_b``: an RxNorm RxCUI, an ingredient or brand name the
knowledge base knows, or ``class:<name>``; a term must stand for one ingredient
or one class (a combination such as "Percocet" is refused: only one of its
ingredients interacts). ``severity``: contraindicated |
major | moderate | minor. ``mechanism`` and ``management`` must not be empty;
an empty ``source`` is recorded as the file's name. Blank lines and lines
starting with ``#`` are skipped. A bad row raises :class:`InputError` whose
message and issue name the line and the column, so whoever maintains the file
can fix it; the whole file is then rejected.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Final

from medhub.cds.medication_kb_records import (
    INTERACTION_SEVERITIES,
    Citation,
    InteractionSpec,
    interaction_severity,
)
from medhub.errors import InputError, Issue

COLUMNS: Final = ("drug_a", "drug_b", "severity", "mechanism", "management", "source")

#: term -> canonical terms (RxCUIs or class:<name>); empty when the term is unknown.
TermLookup = Callable[[str], tuple[str, ...]]


def _fail(source_name: str, line: int, column: str | None, text: str) -> InputError:
    where = f"line {line}" + (f", column {column}" if column else "")
    message = f"{source_name}: {where}: {text}"
    expression = (f"line {line}",) + ((column,) if column else ())
    return InputError(message, [Issue(message=message, code="invalid", expression=expression)])


def _header(rows: list[tuple[int, list[str]]], source_name: str) -> None:
    if not rows:
        raise _fail(source_name, 1, None, f"empty file; expected the header {','.join(COLUMNS)}")
    line, header = rows[0]
    names = [cell.strip().lower() for cell in header]
    for column in COLUMNS:
        if column not in names:
            raise _fail(source_name, line, column, f"the header has no {column!r} column")
    if names != list(COLUMNS):
        raise _fail(source_name, line, None, f"the header must be exactly {','.join(COLUMNS)}")


def _row(line: int, cells: list[str], lookup: TermLookup, source_name: str) -> InteractionSpec:
    if len(cells) != len(COLUMNS):
        raise _fail(source_name, line, None, f"expected {len(COLUMNS)} columns, found {len(cells)}")
    values = dict(zip(COLUMNS, (cell.strip() for cell in cells), strict=True))
    for column in ("drug_a", "drug_b", "severity", "mechanism", "management"):
        if not values[column]:
            raise _fail(source_name, line, column, "is empty")
    sides = []
    for column in ("drug_a", "drug_b"):
        terms = lookup(values[column])
        if not terms:
            raise _fail(
                source_name,
                line,
                column,
                f"unknown drug {values[column]!r}: use an RxCUI, a known name or class:<name>",
            )
        if len(terms) > 1:
            raise _fail(
                source_name,
                line,
                column,
                f"{values[column]!r} is a combination of {', '.join(terms)}; "
                "name the interacting ingredient",
            )
        sides.append(terms)
    severity = interaction_severity(values["severity"].lower())
    if severity is None:
        raise _fail(
            source_name,
            line,
            "severity",
            f"unknown severity {values['severity']!r}; use one of "
            + ", ".join(INTERACTION_SEVERITIES),
        )
    return InteractionSpec(
        sides[0],
        sides[1],
        severity,
        values["mechanism"],
        values["management"],
        Citation(values["source"] or source_name),
        origin=source_name,
    )


def parse_interactions_csv(
    text: str, *, lookup: TermLookup, source_name: str
) -> tuple[InteractionSpec, ...]:
    """Every row of the file as an :class:`InteractionSpec`; see the module docstring."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            if not cells or all(not cell.strip() for cell in cells):
                continue
            if cells[0].lstrip().startswith("#"):
                continue
            rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise _fail(source_name, reader.line_num, None, f"not valid CSV: {exc}") from exc
    _header(rows, source_name)
    return tuple(_row(line, cells, lookup, source_name) for line, cells in rows[1:])
