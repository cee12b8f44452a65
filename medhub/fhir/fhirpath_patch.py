"""FHIRPath Patch (FHIR R4 fhirpatch.html) for the FHIR patch interaction.

A ``Parameters`` resource whose ``operation`` parameters name their target
with a FHIRPath expression, evaluated with ``fhirpathpy`` against the R4 model
(so choice elements such as ``Observation.value`` resolve). Pure: returns a
new dict.

How FHIRPath Patch finds what to change: ``fhirpathpy`` returns the matched
nodes themselves, not their locations. The resource is first copied so that
every object and array is a distinct Python object; a matched object or array
is then found by identity, and a matched primitive by the concrete path
``fhirpathpy`` records on the node (``Patient.name[0].given[1]``), checked by
identity against the value found there.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, TypeAlias

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream  # type: ignore[import-untyped]
from antlr4.error.ErrorListener import ErrorListener  # type: ignore[import-untyped]
from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from medhub.fhir.patch_common import check_identity, copy_json, malformed, unprocessable

Container: TypeAlias = dict[str, Any] | list[Any]
_Parents: TypeAlias = dict[int, tuple[Container, str | int]]

#: FHIR R4 fhirpatch.html, "Operations" table: the parts each type needs.
_FHIRPATH_PATCH_PARTS: Final[dict[str, tuple[str, ...]]] = {
    "add": ("path", "name", "value"),
    "insert": ("path", "value", "index"),
    "delete": ("path",),
    "replace": ("path", "value"),
    "move": ("path", "source", "destination"),
}
_KNOWN_PARTS: Final = frozenset({"type", "path", "name", "value", "index", "source", "destination"})
_ELEMENT_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_PATH_STEP: Final = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?")
_R4_MODEL: Final[dict[str, Any]] = fhirpath_models["r4"]


@dataclass(frozen=True, slots=True)
class _Operation:
    """One ``operation`` parameter of a FHIRPath Patch, checked for form."""

    where: str
    type: str
    path: str
    name: str | None = None
    value: Any = None
    value_from_parts: bool = False
    index: int | None = None
    source: int | None = None
    destination: int | None = None

    def at(self, part: str) -> str:
        """The issue expression of one of this operation's parts."""
        return f"{self.where}.part[{part}]"


@dataclass(frozen=True, slots=True)
class _Match:
    """A node the path selected: its value, and where it sits (None for the resource)."""

    value: Any
    container: Container | None
    key: str | int | None


def apply_fhirpath_patch(resource: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """Apply a FHIRPath Patch (FHIR R4 fhirpatch.html) to a copy of ``resource``.

    Operations apply in order, each to the result of the previous one. All of
    them are checked for form before any is applied, so a malformed patch is
    always a 400, whatever the resource.
    """
    operations = _read_operations(parameters)
    result: dict[str, Any] = copy_json(resource)
    for operation in operations:
        _apply_operation(result, operation)
        check_identity(resource, result, operation.at("name" if operation.name else "path"))
    return result


def _read_operations(parameters: Any) -> list[_Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise malformed("a FHIRPath Patch must be a Parameters resource", "Parameters")
    entries = parameters.get("parameter")
    if not isinstance(entries, list) or not entries:
        message = "the Parameters resource has no 'operation' parameter"
        raise malformed(message, "Parameters.parameter", code="required")
    return [_read_operation(f"Parameters.parameter[{i}]", entry) for i, entry in enumerate(entries)]


def _read_operation(where: str, entry: Any) -> _Operation:
    if not isinstance(entry, dict) or entry.get("name") != "operation":
        raise malformed(f"{where} must be a parameter named 'operation'", f"{where}.name")
    parts = _parts_by_name(where, entry.get("part"))
    if "type" not in parts:
        raise malformed(f"{where} has no 'type' part", f"{where}.part[type]", code="required")
    kind = _part_value(parts["type"], f"{where}.part[type]")
    if not isinstance(kind, str) or kind not in _FHIRPATH_PATCH_PARTS:
        known = ", ".join(_FHIRPATH_PATCH_PARTS)
        raise malformed(f"{where}: type {kind!r} is not one of {known}", f"{where}.part[type]")
    for required in _FHIRPATH_PATCH_PARTS[kind]:
        if required not in parts:
            message = f"{where} ({kind}) has no {required!r} part"
            raise malformed(message, f"{where}.part[{required}]", code="required")
    path = _part_value(parts["path"], f"{where}.part[path]")
    if not isinstance(path, str) or not path.strip():
        raise malformed(f"{where}: path must be a non-empty string", f"{where}.part[path]")
    _check_fhirpath_syntax(path, f"{where}.part[path]")
    name = _part_value(parts["name"], f"{where}.part[name]") if "name" in parts else None
    if name is not None and (not isinstance(name, str) or not _ELEMENT_NAME.fullmatch(name)):
        raise malformed(f"{where}: name {name!r} is not an element name", f"{where}.part[name]")
    value_part = parts.get("value")
    return _Operation(
        where=where,
        type=kind,
        path=path,
        name=name,
        value=_part_value(value_part, f"{where}.part[value]") if value_part is not None else None,
        value_from_parts=value_part is not None and "part" in value_part,
        index=_integer_part(parts, "index", where),
        source=_integer_part(parts, "source", where),
        destination=_integer_part(parts, "destination", where),
    )


def _parts_by_name(where: str, parts: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(parts, list) or not parts:
        raise malformed(f"{where} has no parts", f"{where}.part", code="required")
    by_name: dict[str, dict[str, Any]] = {}
    for position, part in enumerate(parts):
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str):
            raise malformed(f"{where}.part[{position}] has no name", f"{where}.part[{position}]")
        if name not in _KNOWN_PARTS or name in by_name:
            problem = "repeats" if name in by_name else "is not a FHIRPath Patch part"
            raise malformed(f"{where}: part {name!r} {problem}", f"{where}.part[{name}]")
        by_name[name] = part
    return by_name


def _part_value(part: dict[str, Any] | None, expression: str) -> Any:
    """The JSON value a part carries: its one ``value[x]`` (or ``resource``), or an
    object built from nested parts (fhirpatch.html, anonymous types).

    A name repeated among nested parts becomes an array; a single occurrence
    stays a scalar until :func:`_wrap_repeating` makes it an array where the
    element repeats.
    """
    if part is None:
        raise malformed("the part is missing", expression, code="required")
    keys = [key for key in part if key == "resource" or _is_value_key(key)]
    nested = part.get("part")
    if len(keys) == 1 and nested is None:
        return copy_json(part[keys[0]])
    if not keys and isinstance(nested, list) and nested:
        built: dict[str, Any] = {}
        for position, sub in enumerate(nested):
            name = sub.get("name") if isinstance(sub, dict) else None
            if not isinstance(name, str) or not _ELEMENT_NAME.fullmatch(name):
                message = f"nested part {position} of {expression} has no element name"
                raise malformed(message, f"{expression}.part[{position}]")
            value = _part_value(sub, f"{expression}.part[{name}]")
            if name in built:
                previous = built[name]
                built[name] = (
                    [*previous, value] if isinstance(previous, list) else [previous, value]
                )
            else:
                built[name] = value
        return built
    message = f"{expression} must carry exactly one value[x] or a list of nested parts"
    raise malformed(message, expression)


def _is_value_key(key: str) -> bool:
    return key.startswith("value") and key[5:6].isupper()


def _integer_part(parts: dict[str, dict[str, Any]], name: str, where: str) -> int | None:
    if name not in parts:
        return None
    value = _part_value(parts[name], f"{where}.part[{name}]")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        message = f"{where}: {name} must be a non-negative valueInteger, not {value!r}"
        raise malformed(message, f"{where}.part[{name}]")
    return value


class _SyntaxErrors(ErrorListener):  # type: ignore[misc]
    """Collects ANTLR syntax errors; fhirpathpy's own parser ignores them."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def syntaxError(  # ANTLR's callback name
        self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str, e: Any
    ) -> None:
        del recognizer, offendingSymbol, line, e
        self.messages.append(f"column {column + 1}: {msg}")


def _check_fhirpath_syntax(path: str, expression: str) -> None:
    """Parse ``path`` with the FHIRPath N1 grammar, failing on any syntax error.

    ``fhirpathpy.evaluate`` recovers silently from syntax errors
    (``Patient..name`` evaluates to an empty collection), which would turn a
    typo into "nothing to delete". This parses with the same generated grammar
    but an error listener that records every error, to the end of input.
    """
    errors = _SyntaxErrors()
    lexer = FHIRPathLexer(InputStream(path))
    lexer.removeErrorListeners()
    lexer.addErrorListener(errors)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(errors)
    parser.entireExpression()  # type: ignore[no-untyped-call]
    if errors.messages:
        message = f"{path!r} is not a valid FHIRPath expression: {'; '.join(errors.messages)}"
        raise malformed(message, expression)


# --------------------------------------------------- FHIRPath Patch: locating the targets


def _index_parents(root: dict[str, Any]) -> _Parents:
    """Map ``id()`` of every object and array below ``root`` to (container, key)."""
    parents: _Parents = {}
    stack: list[Container] = [root]
    while stack:
        node = stack.pop()
        items: Iterator[tuple[str | int, Any]] = iter(
            node.items() if isinstance(node, dict) else enumerate(node)
        )
        for key, child in items:
            if isinstance(child, dict | list):
                parents[id(child)] = (node, key)
                stack.append(child)
    return parents


def _select(root: dict[str, Any], parents: _Parents, operation: _Operation) -> list[_Match]:
    """Evaluate the operation's path and locate every element it selects."""
    try:
        nodes = fhirpathpy.evaluate(
            root, operation.path, model=_R4_MODEL, options={"returnRawData": True}
        )
    except Exception as exc:  # fhirpathpy raises bare Exception (unknown function, arity)
        message = f"cannot evaluate {operation.path!r}: {exc}"
        raise malformed(message, operation.at("path")) from exc
    matches: list[_Match] = []
    for node in nodes:
        value = getattr(node, "data", node)
        if value is None:
            continue
        match = _locate(root, parents, value, getattr(node, "propName", None), operation)
        if not _in_primitive_extension(match, parents, root):
            matches.append(match)
    return matches


def _locate(
    root: dict[str, Any], parents: _Parents, value: Any, prop_name: Any, operation: _Operation
) -> _Match:
    if value is root:
        return _Match(value, None, None)
    if isinstance(value, dict | list) and id(value) in parents:
        container, key = parents[id(value)]
        return _Match(value, container, key)
    if not isinstance(value, dict | list):
        found = _locate_primitive(root, value, prop_name)
        if found is not None:
            return found
    message = f"{operation.path!r} selects a value that is not an element of the resource"
    raise malformed(message, operation.at("path"))


def _locate_primitive(root: dict[str, Any], value: Any, prop_name: Any) -> _Match | None:
    """Find a primitive by the concrete path fhirpathpy recorded, else by a unique identity."""
    if isinstance(prop_name, str):
        match = _follow(root, prop_name.split(".")[1:])
        if match is not None and match.value is value:
            return match
    candidates = [match for match in _primitive_slots(root) if match.value is value]
    return candidates[0] if len(candidates) == 1 else None


def _follow(root: dict[str, Any], steps: list[str]) -> _Match | None:
    """Walk ``name[0].given[1]``-style steps; a choice name (``value``) finds ``valueX``."""
    current: Any = root
    match: _Match | None = None
    for step in steps:
        parsed = _PATH_STEP.fullmatch(step)
        if parsed is None or not isinstance(current, dict):
            return None
        key = _member_key(current, parsed.group(1))
        if key is None:
            return None
        match = _Match(current[key], current, key)
        current = current[key]
        if parsed.group(2) is not None:
            position = int(parsed.group(2))
            if not isinstance(current, list) or position >= len(current):
                return None
            match = _Match(current[position], current, position)
            current = current[position]
        elif isinstance(current, list):
            return None
    return match


def _member_key(node: dict[str, Any], name: str) -> str | None:
    if name in node:
        return name
    choices = [
        key for key in node if key.startswith(name) and key[len(name) : len(name) + 1].isupper()
    ]
    return choices[0] if len(choices) == 1 else None


def _primitive_slots(node: Container) -> Iterator[_Match]:
    items: Iterator[tuple[str | int, Any]] = iter(
        node.items() if isinstance(node, dict) else enumerate(node)
    )
    for key, child in items:
        if isinstance(child, dict | list):
            yield from _primitive_slots(child)
        else:
            yield _Match(child, node, key)


def _in_primitive_extension(match: _Match, parents: _Parents, root: dict[str, Any]) -> bool:
    """Whether the match is inside a ``_name`` sibling (FHIR R4 json.html#primitive).

    fhirpathpy returns the id/extension holders of primitives next to their
    values; they are part of the primitive, not elements a patch targets.
    """
    container, key = match.container, match.key
    while container is not None:
        if isinstance(key, str) and key.startswith("_"):
            return True
        if container is root:
            return False
        container, key = parents[id(container)]
    return False


def _single(matches: list[_Match], operation: _Operation) -> _Match:
    if not matches:
        message = f"{operation.type}: {operation.path!r} matches nothing in the resource"
        raise unprocessable(message, operation.at("path"))
    if len(matches) > 1:
        message = (
            f"{operation.type}: {operation.path!r} matches {len(matches)} elements; "
            "FHIRPath Patch needs exactly one"
        )
        raise unprocessable(message, operation.at("path"))
    return matches[0]


def _one_list(matches: list[_Match], operation: _Operation) -> list[Any]:
    """The list whose items the path selects: insert and move name a whole collection."""
    lists = {id(match.container): match.container for match in matches}
    if not matches:
        message = (
            f"{operation.type}: {operation.path!r} matches no list in the resource "
            "(to start a list, use add)"
        )
        raise unprocessable(message, operation.at("path"))
    only = next(iter(lists.values()))
    if len(lists) != 1 or not isinstance(only, list):
        message = f"{operation.type}: {operation.path!r} must select the items of one list"
        raise unprocessable(message, operation.at("path"))
    if [match.key for match in matches] != list(range(len(only))):
        # Positions count in the whole list; a filtered path would make them ambiguous.
        message = (
            f"{operation.type}: {operation.path!r} selects only some items of a list; "
            "it must select the whole list"
        )
        raise unprocessable(message, operation.at("path"))
    return only


# ---------------------------------------------------- FHIRPath Patch: the five operations


def _apply_operation(root: dict[str, Any], operation: _Operation) -> None:
    parents = _index_parents(root)
    matches = _select(root, parents, operation)
    _HANDLERS[operation.type](root, parents, matches, operation)


def _add(root: dict[str, Any], parents: _Parents, matches: list[_Match], op: _Operation) -> None:
    """fhirpatch.html add: append to a repeating element, or set one that is absent."""
    target = _single(matches, op).value
    name = typing.cast(str, op.name)
    if not isinstance(target, dict):
        message = f"add: {op.path!r} selects a value that cannot have a child {name!r}"
        raise unprocessable(message, op.at("path"))
    shape = _field_shape(_type_of(root, parents, target), name)
    value = _shaped(op, shape)
    existing = target.get(name)
    if isinstance(existing, list):
        existing.append(value)
        shadow = target.get(f"_{name}")
        if isinstance(shadow, list):
            shadow.append(None)
    elif existing is not None:
        message = f"add: {op.path!r} already has {name!r}; use replace"
        raise unprocessable(message, op.at("name"))
    else:
        target[name] = [value] if shape is not None and shape[0] else value


def _insert(root: dict[str, Any], parents: _Parents, matches: list[_Match], op: _Operation) -> None:
    """fhirpatch.html insert: index 0..len(list), 0-based."""
    items = _one_list(matches, op)
    index = typing.cast(int, op.index)
    if index > len(items):
        message = f"insert: index {index} is past the end of {op.path!r} ({len(items)} items)"
        raise unprocessable(message, op.at("index"))
    owner, field = parents[id(items)]
    items.insert(index, _shaped(op, _field_shape(_type_of(root, parents, owner), field)))
    _edit_shadow(owner, field, lambda shadow: shadow.insert(index, None))


def _delete(root: dict[str, Any], parents: _Parents, matches: list[_Match], op: _Operation) -> None:
    """fhirpatch.html delete: deleting nothing is fine; more than one element is not."""
    if not matches:
        return
    match = _single(matches, op)
    container, key = match.container, match.key
    if container is None or key is None:
        raise unprocessable("delete: cannot delete the resource itself", op.at("path"))
    if isinstance(container, dict):
        assert isinstance(key, str)
        del container[key]
        container.pop(f"_{key}", None)
    else:
        assert isinstance(key, int)
        del container[key]
        owner, field = parents[id(container)]
        _edit_shadow(owner, field, lambda shadow: shadow.pop(key) if key < len(shadow) else None)
    _prune(root, parents, container)


def _replace(
    root: dict[str, Any], parents: _Parents, matches: list[_Match], op: _Operation
) -> None:
    """fhirpatch.html replace: the whole element, including a primitive's id and extensions."""
    match = _single(matches, op)
    container, key = match.container, match.key
    if container is None or key is None:
        raise unprocessable("replace: cannot replace the resource itself", op.at("path"))
    if isinstance(container, dict):
        assert isinstance(key, str)
        owner_type = _type_of(root, parents, container)
        container[key] = _shaped(op, _field_shape(owner_type, key))
        container.pop(f"_{key}", None)
    else:
        assert isinstance(key, int)
        owner, field = parents[id(container)]
        container[key] = _shaped(op, _field_shape(_type_of(root, parents, owner), field))

        def clear(shadow: list[Any]) -> None:
            if key < len(shadow):
                shadow[key] = None

        _edit_shadow(owner, field, clear)


def _move(root: dict[str, Any], parents: _Parents, matches: list[_Match], op: _Operation) -> None:
    """fhirpatch.html move: take the item at source out, then insert it at destination."""
    del root
    items = _one_list(matches, op)
    source, destination = typing.cast(int, op.source), typing.cast(int, op.destination)
    for part, position in (("source", source), ("destination", destination)):
        if position >= len(items):
            message = f"move: {part} {position} is outside {op.path!r} ({len(items)} items)"
            raise unprocessable(message, op.at(part))
    owner, field = parents[id(items)]
    items.insert(destination, items.pop(source))

    def move_shadow(shadow: list[Any]) -> None:
        if len(shadow) == len(items):
            shadow.insert(destination, shadow.pop(source))

    _edit_shadow(owner, field, move_shadow)


_Handler: TypeAlias = Callable[[dict[str, Any], _Parents, list[_Match], _Operation], None]
_HANDLERS: Final[dict[str, _Handler]] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}


def _edit_shadow(owner: Container, field: str | int, edit: Callable[[list[Any]], Any]) -> None:
    """Keep a repeating primitive's ``_name`` array aligned with its values (json.html)."""
    if not isinstance(owner, dict) or not isinstance(field, str):
        return
    shadow = owner.get(f"_{field}")
    if isinstance(shadow, list):
        edit(shadow)
        if all(item is None for item in shadow):
            del owner[f"_{field}"]


def _prune(root: dict[str, Any], parents: _Parents, container: Container) -> None:
    """Remove objects and arrays a delete left empty: FHIR JSON allows neither (json.html)."""
    while container is not root and not container:
        parent, key = parents[id(container)]
        if isinstance(parent, dict):
            assert isinstance(key, str)
            del parent[key]
        else:
            assert isinstance(key, int)
            del parent[key]
        container = parent


# --------------------------------------------------------- FHIRPath Patch: JSON shapes


def _type_of(root: dict[str, Any], parents: _Parents, node: Container) -> str | None:
    """The FHIR type name of an object in the resource, from its path (None if unknown)."""
    steps: list[tuple[Container, str | int]] = []
    current: Container = node
    while current is not root:
        parent, key = parents[id(current)]
        steps.append((parent, key))
        current = parent
    type_name = root.get("resourceType")
    type_name = type_name if isinstance(type_name, str) else None
    for parent, key in reversed(steps):
        if isinstance(key, str):
            shape = _field_shape(type_name, key)
            type_name = shape[1] if shape is not None else None
        child = parent[key]  # type: ignore[index]
        if isinstance(child, dict) and isinstance(child.get("resourceType"), str):
            type_name = child["resourceType"]
    return type_name


@cache
def _field_shape(type_name: str | None, field: str) -> tuple[bool, str | None] | None:
    """Whether ``field`` of ``type_name`` repeats, and the FHIR type of its items.

    A FHIRPath Patch value is a single item; whether the JSON holds it in an
    array depends on the element's cardinality. It is read from the
    ``fhir.resources`` R4B models that medhub validates with (see
    :mod:`medhub.clinical.resources`). None when the type or field is unknown.
    """
    if type_name is None:
        return None
    try:
        model = get_fhir_model_class(type_name)
    except ValueError:
        return None
    info = model.model_fields.get(field)
    if info is None:
        return None
    repeats, item_type = False, None
    pending: list[Any] = [info.annotation]
    while pending:
        annotation = pending.pop()
        origin = typing.get_origin(annotation)
        if origin is not None:
            repeats = repeats or origin is list
            pending.extend(typing.get_args(annotation))
            continue
        name = getattr(annotation, "__name__", "")
        if isinstance(name, str) and name.endswith("Type") and annotation.__module__ == "abc":
            item_type = name.removesuffix("Type")
    return repeats, item_type


def _shaped(operation: _Operation, shape: tuple[bool, str | None] | None) -> Any:
    """The operation's value, with arrays where nested parts named a repeating element once."""
    value = copy_json(operation.value)
    if operation.value_from_parts and shape is not None:
        _wrap_repeating(value, shape[1])
    return value


def _wrap_repeating(value: Any, type_name: str | None) -> None:
    if not isinstance(value, dict):
        return
    if isinstance(value.get("resourceType"), str):
        type_name = value["resourceType"]
    for key, item in list(value.items()):
        shape = _field_shape(type_name, key)
        if shape is None:
            continue
        if shape[0] and not isinstance(item, list):
            value[key] = item = [item]
        for element in item if isinstance(item, list) else [item]:
            _wrap_repeating(element, shape[1])
