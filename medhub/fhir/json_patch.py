"""JSON Patch (RFC 6902, ``application/json-patch+json``) for the FHIR patch interaction.

Applied with the ``jsonpatch`` library one operation at a time, so an error
names the operation that failed (``Patch[2].path``). Pure: returns a new dict.
"""

from __future__ import annotations

import typing
from typing import Any, Final

import jsonpatch
import jsonpointer

from medhub.fhir.patch_common import check_identity, copy_json, malformed, unprocessable

#: RFC 6902 §4: the members each operation needs besides ``op``.
_JSON_PATCH_MEMBERS: Final[dict[str, tuple[str, ...]]] = {
    "add": ("path", "value"),
    "remove": ("path",),
    "replace": ("path", "value"),
    "move": ("from", "path"),
    "copy": ("from", "path"),
    "test": ("path", "value"),
}


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch document to a copy of ``resource``.

    The whole document is checked for form first (400), so a malformed last
    operation is reported even when an earlier one would not apply (422).
    """
    if not isinstance(operations, list):
        raise malformed("a JSON Patch document must be a JSON array of operations", "Patch")
    checked = [_checked_json_operation(index, op) for index, op in enumerate(operations)]
    result: Any = copy_json(resource)
    for index, operation in enumerate(checked):
        result = _apply_json_operation(result, index, operation)
        check_identity(resource, result, f"Patch[{index}].path")
    return typing.cast(dict[str, Any], result)


def _checked_json_operation(index: int, operation: Any) -> dict[str, Any]:
    """Check one operation's form (RFC 6902 §4) and return a private copy of it."""
    where = f"Patch[{index}]"
    if not isinstance(operation, dict):
        raise malformed(f"{where} must be a JSON object", where)
    op = operation.get("op")
    if not isinstance(op, str) or op not in _JSON_PATCH_MEMBERS:
        known = ", ".join(_JSON_PATCH_MEMBERS)
        raise malformed(f"{where}.op is {op!r}; expected one of {known}", f"{where}.op")
    for member in _JSON_PATCH_MEMBERS[op]:
        if member not in operation:
            message = f"{where} ({op}) has no {member!r} member"
            raise malformed(message, f"{where}.{member}", code="required")
        if member in ("path", "from"):
            pointer = operation[member]
            try:
                if not isinstance(pointer, str):
                    raise jsonpointer.JsonPointerException("a JSON Pointer must be a string")
                jsonpointer.JsonPointer(pointer)
            except jsonpointer.JsonPointerException as exc:
                message = f"{where}.{member} {pointer!r} is not a JSON Pointer (RFC 6901): {exc}"
                raise malformed(message, f"{where}.{member}") from exc
    return typing.cast(dict[str, Any], copy_json(operation))


def _apply_json_operation(document: Any, index: int, operation: dict[str, Any]) -> Any:
    """Apply one checked operation in place, translating jsonpatch's exceptions."""
    where = f"Patch[{index}]"
    op = operation["op"]
    if "from" in operation and op in ("move", "copy"):
        missing = object()
        if jsonpointer.resolve_pointer(document, operation["from"], missing) is missing:
            message = f"{where} ({op}): nothing at 'from' {operation['from']!r} in the resource"
            raise unprocessable(message, f"{where}.from")
    path = operation["path"]
    try:
        return jsonpatch.JsonPatch([operation]).apply(document, in_place=True)
    except jsonpatch.JsonPatchTestFailed as exc:
        message = f"{where} (test) failed at {path!r}: {_brief(exc)}"
        raise unprocessable(message, f"{where}.path") from exc
    except jsonpatch.JsonPatchConflict as exc:
        message = f"{where} ({op}) cannot be applied at {path!r}: {_brief(exc)}"
        raise unprocessable(message, f"{where}.path") from exc
    except jsonpointer.JsonPointerException as exc:
        # Its message embeds the whole document; name the missing step instead.
        message = f"{where} ({op}) cannot be applied at {path!r}: {_missing_step(document, path)}"
        raise unprocessable(message, f"{where}.path") from exc
    except jsonpatch.InvalidJsonPatch as exc:
        raise malformed(f"{where} is not a valid operation: {_brief(exc)}", where) from exc


def _brief(exc: Exception, limit: int = 200) -> str:
    """A library message short enough for an OperationOutcome (it may quote values)."""
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _missing_step(document: Any, path: str) -> str:
    """Describe the first step of ``path`` that leads nowhere in ``document``."""
    current = document
    walked = ""
    for part in jsonpointer.JsonPointer(path).parts:
        step = f"{walked}/{jsonpointer.escape(part)}"
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return f"nothing at {step!r}"
        walked = step
    return f"nothing at {path!r}"
