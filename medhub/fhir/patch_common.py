"""What both patch formats share: their errors and the checks on the patched result."""

from __future__ import annotations

from typing import Any

from medhub.errors import InputError, InvalidResourceError, Issue


def malformed(message: str, expression: str, code: str = "invalid") -> InputError:
    return InputError(message, [Issue(message, code=code, expression=(expression,))])


def unprocessable(message: str, expression: str) -> InvalidResourceError:
    return InvalidResourceError(
        message, [Issue(message, code="processing", expression=(expression,))]
    )


def copy_json(value: Any) -> Any:
    """Copy a JSON tree so that every object and array is a new, distinct object.

    Unlike ``copy.deepcopy`` this does not preserve aliasing: FHIRPath Patch
    finds matched nodes by identity, and a dict reachable by two paths would be
    ambiguous. Copying the patch document too keeps the result from sharing
    objects with it.
    """
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def check_identity(original: dict[str, Any], patched: Any, expression: str) -> None:
    """Refuse a result that is not a resource or is another resource (http.html#patch)."""
    if not isinstance(patched, dict):
        raise unprocessable("the patched resource must remain a JSON object", expression)
    for key in ("resourceType", "id"):
        if patched.get(key) != original.get(key):
            message = (
                f"a patch cannot change {key} "
                f"({original.get(key)!r} would become {patched.get(key)!r})"
            )
            raise unprocessable(message, expression)
