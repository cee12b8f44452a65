"""Compile the FHIRPath subset used by FHIR R4 SearchParameter expressions (pure; no database).

The write path must index about 2,000 resources/s, so general FHIRPath is never
evaluated per write. The expressions of the official definitions use a small
subset (FHIRPath N1 §5-§6 as profiled by FHIR R4 search.html#expression):

* element paths ``Patient.name.given`` (lists flatten on the way);
* ``|`` unions of such paths;
* casts on choice elements ``(Observation.value as Quantity)``,
  ``Condition.onset.as(dateTime)``, ``.ofType(Period)``: ``value[x]`` is stored
  in JSON as ``valueQuantity``, so a cast is a step to that key;
* ``.where(resolve() is Patient)``: keep references whose target type is Patient;
* ``.where(system='phone')``: keep elements whose field has that value;
* ``.extension('url')``: the ``value[x]`` of the extensions with that URL;
* a path ending on a choice element without a cast (``Observation.effective``)
  reads whichever ``effective[x]`` key the resource has.

:func:`compile_expression` turns an expression into a tuple of :class:`Path`
once, at load time; :func:`evaluate` walks a resource with them. An expression
outside the subset (``Patient.deceased.exists() and …``) compiles to None and
its parameter is not served (a search on it is a 400 naming it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

_IDENT: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_CAST_PAREN: Final = re.compile(rf"^\(({_IDENT}(?:\.{_IDENT})*) as ({_IDENT})\)((?:\.{_IDENT})*)$")
_CAST_CALL: Final = re.compile(rf"^(.*)\.(?:as|ofType)\(({_IDENT})\)((?:\.{_IDENT})*)$")
_WHERE_RESOLVE: Final = re.compile(rf"^where\(resolve\(\) is ({_IDENT})\)$")
_WHERE_EQUALS: Final = re.compile(rf"^where\(({_IDENT})\s*=\s*'([^']*)'\)$")
_EXTENSION: Final = re.compile(r"^extension\('([^']+)'\)$")


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a path: the JSON key to follow and an optional filter on what it yields."""

    key: str
    choice: bool = False  # the last step of a path: ``effective`` also reads ``effectiveDateTime``
    equals: tuple[str, str] | None = None  # keep mappings whose field has this value
    reference_type: str | None = None  # keep references to this resource type
    extension_url: str | None = None  # keep extensions with this url, yield their value[x]


Path = tuple[Step, ...]


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` alternatives of an expression (parentheses respected)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in expression:
        depth += (char == "(") - (char == ")")
        if char == "|" and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    tail = "".join(current).strip()
    if tail:
        parts.append(tail)
    return parts


def _split_dots(text: str) -> list[str]:
    """``a.where(b='x.y').c`` -> ``[a, where(b='x.y'), c]`` (dots inside calls kept)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted:
            depth += (char == "(") - (char == ")")
        if char == "." and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _steps(tokens: list[str]) -> list[Step] | None:
    steps: list[Step] = []
    for token in tokens:
        if re.fullmatch(_IDENT, token):
            steps.append(Step(token))
            continue
        extension = _EXTENSION.match(token)
        if extension:
            steps.append(Step("extension", extension_url=extension.group(1)))
            continue
        if not steps:
            return None
        resolve = _WHERE_RESOLVE.match(token)
        equals = _WHERE_EQUALS.match(token)
        last = steps[-1]
        if resolve and last.reference_type is None:
            steps[-1] = Step(last.key, False, last.equals, resolve.group(1), last.extension_url)
        elif equals and last.equals is None:
            steps[-1] = Step(
                last.key, False, (equals.group(1), equals.group(2)), last.reference_type
            )
        else:
            return None
    return steps


def _cast(path: str, type_name: str, rest: str) -> Path | None:
    tokens = _split_dots(path)
    if len(tokens) < 2:
        return None
    *head, choice = tokens
    steps = _steps(head[1:])
    if steps is None or not re.fullmatch(_IDENT, choice):
        return None
    steps.append(Step(choice + type_name[:1].upper() + type_name[1:]))
    tail = _steps([t for t in rest.split(".") if t])
    return None if tail is None else tuple(steps + tail)


def compile_part(part: str) -> Path | None:
    """One union alternative as a path below the resource, or None outside the subset."""
    part = part.strip()
    cast = _CAST_PAREN.match(part) or _CAST_CALL.match(part)
    if cast:
        return _cast(cast.group(1), cast.group(2), cast.group(3))
    tokens = _split_dots(part)
    if len(tokens) == 1:  # ``id``: the common parameters written without a type
        tokens = ["Resource", *tokens]
    steps = _steps(tokens[1:])
    if not steps:
        return None
    last = steps[-1]
    if last.equals is None and last.reference_type is None and last.extension_url is None:
        steps[-1] = Step(last.key, True)
    return tuple(steps)


def compile_expression(expression: str) -> tuple[Path, ...] | None:
    """Every alternative compiled, or None if any of them is outside the subset."""
    parts = split_union(expression)
    if not parts:
        return None
    paths = [compile_part(p) for p in parts]
    if any(p is None for p in paths):
        return None
    return tuple(p for p in paths if p is not None)


def _reference_type(value: Any) -> str | None:
    reference = value.get("reference") if isinstance(value, Mapping) else None
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2] if len(parts) >= 2 else None


def _extension_value(extension: Mapping[str, Any]) -> Any:
    for key, value in extension.items():
        if key.startswith("value"):
            return value
    return None


def _choices(node: Mapping[str, Any], key: str) -> list[Any]:
    """The values of ``key[x]``: keys ``key`` + an upper-case type name."""
    size = len(key)
    found: list[Any] = []
    for name, value in node.items():
        if len(name) > size and name.startswith(key) and name[size].isupper():
            found.extend(value if isinstance(value, list) else (value,))
    return found


def _keep(step: Step, value: Any) -> Any:
    """``value`` if it passes the step's filter (the extension's value for extension steps)."""
    if step.equals is not None:
        field, wanted = step.equals
        if not isinstance(value, Mapping) or value.get(field) != wanted:
            return None
    if step.reference_type is not None and _reference_type(value) != step.reference_type:
        return None
    if step.extension_url is not None:
        if not isinstance(value, Mapping) or value.get("url") != step.extension_url:
            return None
        return _extension_value(value)
    return value


def evaluate(paths: tuple[Path, ...], resource: Mapping[str, Any]) -> list[Any]:
    """The values the compiled expression selects in ``resource`` (lists flattened)."""
    found: list[Any] = []
    for path in paths:
        current: list[Any] = [resource]
        for step in path:
            following: list[Any] = []
            filtered = step.equals or step.reference_type or step.extension_url
            for node in current:
                if not isinstance(node, Mapping):
                    continue
                value = node.get(step.key)
                if value is None:
                    if step.choice:
                        following.extend(_choices(node, step.key))
                    continue
                for item in value if isinstance(value, list) else (value,):
                    kept = _keep(step, item) if filtered else item
                    if kept is not None:
                        following.append(kept)
            current = following
            if not current:
                break
        found.extend(current)
    return found
