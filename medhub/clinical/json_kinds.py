"""The JSON kind FHIR requires of each element, read from the fhir.resources model classes.

FHIR R4 JSON (json.html, "Primitive types") sends ``boolean`` as a JSON boolean,
``integer``, ``unsignedInt``, ``positiveInt`` and ``decimal`` as JSON numbers, and every
other primitive as a JSON string. The R4B models validate in pydantic's lax mode, which
reads ``"yes"`` as true and ``"2"`` as 2, so a resource the models accept may still be
wrong FHIR JSON. :func:`json_kind_issues` finds those elements.

It walks the JSON *as sent* next to the field annotations of the model classes, with a
map from JSON key to expected kind built once per class. medhub used to dump the
validated model back to JSON and compare the two leaf by leaf; the dump cost twice the
validation itself and was the largest cost of FHIR ingest. The walk reports exactly what
that comparison reported: a key is looked at only if the dump would have written it (the
class's ``elements_sequence``, the ``_element`` sibling of a primitive, ``fhir_comments``),
so an element the models ignore stays ignored, and a primitive extension (``_birthDate``)
is walked as the ``Element`` the model reads it as. ``tests/clinical/test_json_kinds.py``
keeps the dump-and-compare as the reference and checks the two agree on mutated official
examples.

The walk runs after model validation succeeded, so the sent JSON already has the shape the
models want; where it does not (a list for a single element, an object for a primitive),
the element is skipped, as the comparison skipped it.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import types
import typing
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from fhir_core.utils import is_primitive_type

from medhub.errors import Issue

JsonKind = Literal["boolean", "number", "string"]

#: The Python types the models hold primitives in, and the JSON kind each is sent as
#: (FHIR R4 json.html#primitive; the ``decimal`` type is a Decimal, ``date``/``dateTime``/
#: ``instant``/``time`` are datetime objects or, when partial, strings, ``base64Binary`` is
#: bytes, ``url`` may be a pydantic URL, ``uuid`` a UUID).
_PRIMITIVE_KINDS: Final[Mapping[type, JsonKind]] = {
    bool: "boolean",
    int: "number",
    float: "number",
    decimal.Decimal: "number",
    str: "string",
    bytes: "string",
    datetime.date: "string",
    datetime.datetime: "string",
    datetime.time: "string",
    uuid.UUID: "string",
    pydantic.AnyUrl: "string",
}


@dataclass(frozen=True, slots=True)
class Element:
    """What a model expects under one JSON key.

    Exactly one of ``kind`` (a primitive) and ``model`` (a complex element, a backbone
    element or a resource) is set; neither is set for an annotation this module does not
    understand, which is then not checked (``unknown_annotations`` lists them, and a test
    keeps that list empty for the fhir.resources version medhub pins).
    """

    kind: JsonKind | None
    model: type[FHIRAbstractModel] | None
    #: A contained resource: the class is the one the JSON's ``resourceType`` names, as in
    #: ``FhirElementOrResourceBase`` validation; ``model`` is the fallback without one.
    by_resource_type: bool
    #: True for a list, False for a single value, None when the model takes either
    #: (``fhir_comments``).
    repeats: bool | None
    annotation: Any

    def model_for(self, sent: Mapping[str, Any]) -> type[FHIRAbstractModel] | None:
        """The class the models read ``sent`` as."""
        if not self.by_resource_type:
            return self.model
        resource_type = sent.get("resourceType")
        if not isinstance(resource_type, str):
            return self.model
        try:
            model: type[FHIRAbstractModel] = get_fhir_model_class(resource_type)
        except ValueError:  # not a type; model validation has refused it already
            return None
        return model


def json_kind_issues(
    sent: Mapping[str, Any], model: type[FHIRAbstractModel], path: str
) -> list[Issue]:
    """Elements of ``sent`` whose JSON kind is not the one ``model`` requires.

    ``sent`` is the JSON of a resource ``model`` validated; ``path`` is its FHIRPath (the
    resource type). Each issue reads ``Patient.active: a JSON boolean is required, got the
    string 'yes'``, with code ``structure`` and the element's FHIRPath as expression.
    """
    issues: list[Issue] = []
    _walk(sent, model, path, issues)
    return issues


def elements(model: type[FHIRAbstractModel]) -> Mapping[str, Element]:
    """The JSON keys ``model`` reads, each with what it expects there (cached per class)."""
    return _elements(model)


def unknown_annotations(model: type[FHIRAbstractModel]) -> Iterator[tuple[str, Any]]:
    """Keys of ``model`` whose annotation maps to no JSON kind nor model class."""
    for key, element in elements(model).items():
        if element.kind is None and element.model is None:
            yield key, element.annotation


def _walk(
    sent: Mapping[str, Any],
    model: type[FHIRAbstractModel],
    path: str,
    issues: list[Issue],
) -> None:
    expected = _elements(model)
    for key, value in sent.items():
        element = expected.get(key)
        if element is None or value is None:
            continue
        # The common case, a primitive of the right kind, builds no path string.
        kind = element.kind
        if isinstance(value, list):
            if element.repeats is not False:
                for index, item in enumerate(value):
                    if kind is None or _json_kind(item) not in (kind, None):
                        _check(item, element, f"{path}.{key}[{index}]", issues)
        elif element.repeats is not True:
            if kind is None or _json_kind(value) not in (kind, None):
                _check(value, element, f"{path}.{key}", issues)


def _check(value: Any, element: Element, path: str, issues: list[Issue]) -> None:
    kind = element.kind
    if kind is not None:
        sent_kind = _json_kind(value)
        if sent_kind is not None and sent_kind != kind:
            issues.append(
                Issue(
                    f"{path}: a JSON {kind} is required, got the {sent_kind} {value!r}",
                    code="structure",
                    expression=(path,),
                )
            )
    elif isinstance(value, Mapping):
        model = element.model_for(value)
        if model is not None:
            _walk(value, model, path, issues)


def _json_kind(value: Any) -> JsonKind | None:
    """The JSON kind of a parsed JSON value; None for null, objects and arrays."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


@functools.cache
def _elements(model: type[FHIRAbstractModel]) -> Mapping[str, Element]:
    """Mirror ``FHIRAbstractModel._fhir_iter``: the keys the model writes, by alias."""
    fields = model.model_fields
    field_names = model.get_alias_mapping()
    result: dict[str, Element] = {}
    for name in model.elements_sequence():
        field_name = field_names[name]
        info = fields[field_name]
        result[info.alias or field_name] = _element(info.annotation)
        extension = fields.get(f"{field_name}__ext")
        if extension is not None and is_primitive_type(info):
            result[extension.alias or f"{field_name}__ext"] = _element(extension.annotation)
    comments = fields.get("fhir_comments")
    if comments is not None:
        result["fhir_comments"] = _element(comments.annotation)
    return types.MappingProxyType(result)


def _element(annotation: Any) -> Element:
    """Unwrap Optional, Union, List and Annotated down to the types a value may have."""
    in_list: set[bool] = set()
    leaves: set[Any] = set()

    def visit(tp: Any, listed: bool) -> None:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            visit(typing.get_args(tp)[0], listed)
        elif origin is typing.Union or origin is types.UnionType:
            for arg in typing.get_args(tp):
                if arg is not types.NoneType:
                    visit(arg, listed)
        elif origin is list:
            visit(typing.get_args(tp)[0], True)
        else:
            in_list.add(listed)
            leaves.add(tp)

    visit(annotation, False)
    repeats = next(iter(in_list)) if len(in_list) == 1 else None
    kinds = {_primitive_kind(leaf) for leaf in leaves}
    if len(kinds) == 1 and None not in kinds:
        return Element(kinds.pop(), None, False, repeats, annotation)
    leaf = next(iter(leaves)) if len(leaves) == 1 else None
    if isinstance(leaf, type) and issubclass(leaf, FhirBase):
        by_resource_type = issubclass(leaf, FhirElementOrResourceBase)
        return Element(None, leaf.get_model_klass(), by_resource_type, repeats, annotation)
    return Element(None, None, False, repeats, annotation)


def _primitive_kind(tp: Any) -> JsonKind | None:
    if not isinstance(tp, type):
        return None
    for python_type in tp.__mro__:
        kind = _PRIMITIVE_KINDS.get(python_type)
        if kind is not None:
            return kind
    return None
