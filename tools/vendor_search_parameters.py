"""Vendor the HL7 FHIR R4 SearchParameter definitions medhub serves.

Usage::

    cd /tmp && npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz
    python tools/vendor_search_parameters.py /tmp/package/Bundle-searchParams.json

Reads the official ``search-parameters.json`` Bundle (FHIR R4 4.0.1, CC0; the
examples package ships it as ``Bundle-searchParams.json``) and writes
``medhub/fhir/data/search_parameters.json``: for each resource type medhub
serves (plus ``Resource`` and ``DomainResource``), every parameter's code,
type, the part of its FHIRPath expression that applies to that type, its
reference targets, comparators, modifiers and canonical URL. Splitting the
shared expressions (``clinical-patient`` spans 32 types) per type here keeps
the loader in medhub a plain lookup.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from medhub.clinical.resources import RESOURCE_TYPES

OUT = Path(__file__).resolve().parents[1] / "medhub" / "fhir" / "data" / "search_parameters.json"
COMMON = ("Resource", "DomainResource")


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` alternatives of a FHIRPath expression (parentheses respected)."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in expression:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def applies_to(part: str, base: str) -> bool:
    """Whether one alternative of an expression reads from ``base`` resources."""
    head = part.lstrip("(")
    return head == base or head.startswith((base + ".", base + " "))


def entries(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The compact definitions, per served base type, sorted by code."""
    served = set(RESOURCE_TYPES) | set(COMMON)
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        param = entry["resource"]
        for base in param["base"]:
            if base not in served:
                continue
            expression = param.get("expression", "")
            parts = [p for p in split_union(expression) if applies_to(p, base)]
            if base in COMMON and expression and not parts:
                parts = split_union(expression)  # ``_id`` is written as plain ``id``
            item: dict[str, Any] = {
                "code": param["code"],
                "type": param["type"],
                "expression": " | ".join(parts),
                "url": param["url"],
            }
            for key in ("target", "comparator", "modifier"):
                if param.get(key):
                    item[key] = param[key]
            if param.get("component"):
                item["component"] = [c["expression"] for c in param["component"]]
            out.setdefault(base, []).append(item)
    return {base: sorted(items, key=lambda i: i["code"]) for base, items in sorted(out.items())}


def main(source: str) -> None:
    bundle = json.loads(Path(source).read_text(encoding="utf-8"))
    document = {
        "source": "hl7.fhir.r4.examples@4.0.1 Bundle-searchParams.json (FHIR R4 4.0.1, CC0)",
        "parameters": entries(bundle),
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    count = sum(len(v) for v in document["parameters"].values())
    print(f"wrote {count} definitions for {len(document['parameters'])} types to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
