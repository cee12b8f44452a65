"""Reading the packaged knowledge-base files (``medhub/cds/data/*.toml``).

The files are reviewed data, so the reader is strict: an unknown key, an
interaction naming a drug or class that does not exist, a source id nobody
defined, or a dose range whose name disagrees with its RxCUI is an error. Every
problem of every file is reported at once, as one :class:`ConfigurationError`
whose issues name the file and entry (``interactions.toml: interaction[3]: ...``).
The file formats are described in the comments at the top of each file and in
``docs/medication-safety.md``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, Final, TypeVar, cast

from medhub.cds.medication_kb_records import (
    CLASS_PREFIX,
    INTERACTION_SEVERITIES,
    ISSUE_SEVERITIES,
    Citation,
    CrossReactivity,
    DoseRange,
    DrugClass,
    Ingredient,
    InteractionSpec,
    KnowledgeData,
    Product,
    Source,
    interaction_severity,
    issue_severity,
)
from medhub.errors import ConfigurationError, Issue

DATA_FILES: Final = (
    "sources.toml",
    "drugs.toml",
    "interactions.toml",
    "allergies.toml",
    "doses.toml",
)
_T = TypeVar("_T")


class _Invalid(Exception):
    """One entry is unusable; its problem is already recorded."""


class _Reader:
    """Typed access to TOML tables that records problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def problem(self, where: str, text: str) -> None:
        self.issues.append(Issue(message=f"{where}: {text}", expression=(where,)))

    def value(self, table: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T:
        value = table.get(key)
        if value is None:
            self.problem(where, f"{key!r} is required")
            raise _Invalid
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            self.problem(where, f"{key!r} must be a {kind.__name__}")
            raise _Invalid
        return value

    def optional(self, table: Mapping[str, Any], key: str, kind: type[_T], where: str) -> _T | None:
        return None if table.get(key) is None else self.value(table, key, kind, where)

    def strings(self, table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = table.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            self.problem(where, f"{key!r} must be a list of non-empty strings")
            raise _Invalid
        return tuple(cast(list[str], values))

    def number(self, table: Mapping[str, Any], key: str, where: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            self.problem(where, f"{key!r} must be a positive number")
            raise _Invalid
        return float(value)

    def keys(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(table) - allowed):
            self.problem(where, f"unknown key {key!r}")

    def entries(self, document: Mapping[str, Any], key: str, where: str) -> list[dict[str, Any]]:
        entries = document.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.problem(where, f"{key!r} must be an array of tables ([[{key}]])")
            return []
        return cast(list[dict[str, Any]], entries)


class _Parser:
    """Builds :class:`KnowledgeData` from the five documents, cross-checking names."""

    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        self.docs = documents
        self.read = _Reader()
        self.sources: dict[str, Source] = {}
        self.classes: dict[str, DrugClass] = {}
        self.ingredients: dict[str, Ingredient] = {}
        self.by_name: dict[str, str] = {}

    def citation(self, entry: Mapping[str, Any], where: str) -> Citation:
        ids = self.read.strings(entry, "sources", where)
        unknown = [i for i in ids if i not in self.sources]
        if not ids or unknown:
            self.read.problem(where, f"needs known source ids, got {list(ids)}")
            raise _Invalid
        return Citation.of(tuple(self.sources[i] for i in ids))

    def parse(self) -> KnowledgeData:
        version = self._sources()
        self._classes()
        self._ingredients()
        products = self._each("drugs.toml", "product", self._product)
        interactions = self._each("interactions.toml", "interaction", self._interaction)
        cross = self._each("allergies.toml", "cross_reactivity", self._cross)
        doses = self._each("doses.toml", "dose_range", self._dose)
        if self.read.issues:
            count = len(self.read.issues)
            raise ConfigurationError(
                f"the medication knowledge base has {count} problem(s): "
                + "; ".join(issue.message for issue in self.read.issues[:5]),
                issues=self.read.issues,
            )
        return KnowledgeData(
            version,
            tuple(self.sources.values()),
            tuple(self.classes.values()),
            tuple(self.ingredients.values()),
            products,
            interactions,
            cross,
            doses,
        )

    def _each(
        self, file: str, key: str, build: Callable[[dict[str, Any], str], _T]
    ) -> tuple[_T, ...]:
        built: list[_T] = []
        for index, entry in enumerate(self.read.entries(self.docs[file], key, file)):
            try:
                built.append(build(entry, f"{file}: {key}[{index}]"))
            except _Invalid:
                continue
        return tuple(built)

    def _sources(self) -> str:
        document = self.docs["sources.toml"]
        self.read.keys(document, {"version", "source"}, "sources.toml")
        table = document.get("source", {})
        for source_id, entry in table.items() if isinstance(table, dict) else ():
            where = f"sources.toml: source.{source_id}"
            try:
                self.read.keys(entry, {"citation", "url"}, where)
                citation = self.read.value(entry, "citation", str, where)
                url = self.read.optional(entry, "url", str, where)
                self.sources[source_id] = Source(source_id, citation, url)
            except _Invalid:
                continue
        try:
            return self.read.value(document, "version", str, "sources.toml")
        except _Invalid:
            return "unknown"

    def _classes(self) -> None:
        for index, entry in enumerate(self.read.entries(self.docs["drugs.toml"], "class", "")):
            where = f"drugs.toml: class[{index}]"
            try:
                allowed = {"name", "label", "therapeutic", "allergy_scope", "synonyms"}
                self.read.keys(entry, allowed, where)
                name = self.read.value(entry, "name", str, where)
                scope = self.read.optional(entry, "allergy_scope", str, where) or "member"
                if scope not in ("class", "member") or name in self.classes:
                    self.read.problem(where, f"bad allergy_scope or duplicate class {name!r}")
                    continue
                self.classes[name] = DrugClass(
                    name,
                    self.read.value(entry, "label", str, where),
                    bool(self.read.optional(entry, "therapeutic", bool, where)),
                    "class" if scope == "class" else "member",
                    self.read.strings(entry, "synonyms", where),
                )
            except _Invalid:
                continue

    def _ingredients(self) -> None:
        for index, entry in enumerate(self.read.entries(self.docs["drugs.toml"], "drug", "")):
            where = f"drugs.toml: drug[{index}]"
            try:
                self.read.keys(entry, {"rxcui", "name", "classes", "synonyms"}, where)
                rxcui = self._rxcui(entry, where)
                name = self.read.value(entry, "name", str, where)
                classes = self.read.strings(entry, "classes", where)
                unknown = [c for c in classes if c not in self.classes]
                if rxcui in self.ingredients or name in self.by_name or unknown:
                    self.read.problem(where, f"duplicate {rxcui}/{name!r} or unknown {unknown}")
                    continue
                synonyms = self.read.strings(entry, "synonyms", where)
                self.ingredients[rxcui] = Ingredient(rxcui, name, classes, synonyms)
                self.by_name[name] = rxcui
            except _Invalid:
                continue

    def _rxcui(self, entry: Mapping[str, Any], where: str) -> str:
        rxcui = self.read.value(entry, "rxcui", str, where)
        if not rxcui.isdigit():
            self.read.problem(where, f"rxcui {rxcui!r} is not an RxCUI")
            raise _Invalid
        return rxcui

    def _product(self, entry: dict[str, Any], where: str) -> Product:
        self.read.keys(entry, {"rxcui", "tty", "name", "ingredients", "names"}, where)
        rxcui = self._rxcui(entry, where) if "rxcui" in entry else None
        ingredients = self.read.strings(entry, "ingredients", where)
        if not ingredients or any(i not in self.ingredients for i in ingredients):
            self.read.problem(where, f"ingredients {list(ingredients)} must be known RxCUIs")
            raise _Invalid
        if rxcui in self.ingredients:
            self.read.problem(where, f"rxcui {rxcui} is already an ingredient")
            raise _Invalid
        return Product(
            self.read.value(entry, "name", str, where),
            ingredients,
            rxcui,
            self.read.optional(entry, "tty", str, where),
            self.read.strings(entry, "names", where),
        )

    def _term(self, term: str, where: str) -> str:
        """An interaction term: ``class:<known class>``, a known ingredient name or RxCUI."""
        if term.startswith(CLASS_PREFIX) and term.removeprefix(CLASS_PREFIX) in self.classes:
            return term
        if term in self.ingredients:
            return term
        if term in self.by_name:
            return self.by_name[term]
        self.read.problem(where, f"unknown drug or class {term!r}")
        raise _Invalid

    def _interaction(self, entry: dict[str, Any], where: str) -> InteractionSpec:
        allowed = {"a", "b", "severity", "mechanism", "management", "sources"}
        self.read.keys(entry, allowed, where)
        sides = [self.read.strings(entry, side, where) for side in ("a", "b")]
        if not all(sides):
            self.read.problem(where, "'a' and 'b' must each name at least one drug or class")
            raise _Invalid
        text = self.read.value(entry, "severity", str, where)
        severity = interaction_severity(text)
        if severity is None:
            self.read.problem(where, f"severity {text!r} is not one of {INTERACTION_SEVERITIES}")
            raise _Invalid
        return InteractionSpec(
            tuple(self._term(t, where) for t in sides[0]),
            tuple(self._term(t, where) for t in sides[1]),
            severity,
            self.read.value(entry, "mechanism", str, where),
            self.read.value(entry, "management", str, where),
            self.citation(entry, where),
        )

    def _cross(self, entry: dict[str, Any], where: str) -> CrossReactivity:
        self.read.keys(entry, {"allergy", "drug", "severity", "note", "sources"}, where)
        classes = []
        for key in ("allergy", "drug"):
            term = self._term(self.read.value(entry, key, str, where), where)
            if not term.startswith(CLASS_PREFIX):
                self.read.problem(where, f"{key!r} must be class:<name>")
                raise _Invalid
            classes.append(term.removeprefix(CLASS_PREFIX))
        text = self.read.value(entry, "severity", str, where)
        severity = issue_severity(text)
        if severity is None:
            self.read.problem(where, f"severity {text!r} is not one of {ISSUE_SEVERITIES}")
            raise _Invalid
        return CrossReactivity(
            classes[0],
            classes[1],
            severity,
            self.read.value(entry, "note", str, where),
            self.citation(entry, where),
        )

    def _dose(self, entry: dict[str, Any], where: str) -> DoseRange:
        limits = {"max_single_mg", "max_daily_mg", "min_daily_mg", "max_weekly_mg"}
        allowed = {"drug", "name", "routes", "weekly_only", "note", "sources"} | limits
        self.read.keys(entry, allowed, where)
        rxcui = self.read.value(entry, "drug", str, where)
        name = self.read.value(entry, "name", str, where)
        known = self.ingredients.get(rxcui)
        if known is None or known.name != name:
            self.read.problem(where, f"drug {rxcui} is not the ingredient {name!r}")
            raise _Invalid
        numbers = {key: self.read.number(entry, key, where) for key in sorted(limits)}
        if all(value is None for value in numbers.values()):
            self.read.problem(where, "gives no limit")
            raise _Invalid
        return DoseRange(
            rxcui,
            name,
            self.read.value(entry, "note", str, where),
            self.citation(entry, where),
            self.read.strings(entry, "routes", where),
            weekly_only=bool(self.read.optional(entry, "weekly_only", bool, where)),
            **numbers,
        )


def parse_knowledge(texts: Mapping[str, str]) -> KnowledgeData:
    """Check and build the knowledge data from the text of each file in :data:`DATA_FILES`."""
    documents: dict[str, dict[str, Any]] = {}
    for name in DATA_FILES:
        try:
            documents[name] = tomllib.loads(texts.get(name, ""))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{name}: not valid TOML: {exc}") from exc
    return _Parser(documents).parse()


def read_packaged_knowledge() -> KnowledgeData:
    """The knowledge data shipped in ``medhub/cds/data``."""
    folder = resources.files("medhub.cds").joinpath("data")
    return parse_knowledge({name: folder.joinpath(name).read_text("utf-8") for name in DATA_FILES})
