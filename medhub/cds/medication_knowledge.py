"""The medication-safety knowledge base: local, versioned, indexed once at load time.

What ships (``medhub/cds/data/*.toml``, described in ``docs/medication-safety.md``):
RxNorm ingredients with their classes and brand names, clinical drugs (SCD) and
combinations (MIN) mapped to ingredients, the ONC high-priority interaction list
(Phansalkar et al., JAMIA 2012) and label-based pairs, allergy cross-reactivity
(2022 drug-allergy practice parameter) and adult dose ranges, each fact with
its public source. A site adds its licensed interaction pairs with
:func:`load_interactions_csv`.

Everything a check needs is a dict lookup: ingredient and product codes, class
membership, an interaction index keyed by the (sorted) ingredient pair, and a
name index for drugs sent only as text. :meth:`KnowledgeBase.resolve` also
caches per :class:`DrugRef`, so checking an order against a patient's whole
medication list stays far below a millisecond in pure Python.

A drug the base cannot resolve (an unknown code and an unknown name) resolves
to the empty set; the checks then report nothing for it, and the caller should
tell the prescriber the order was not checked.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Final

from medhub.cds.medication_kb_csv import parse_interactions_csv
from medhub.cds.medication_kb_files import read_packaged_knowledge
from medhub.cds.medication_kb_records import (
    CLASS_PREFIX,
    CrossReactivity,
    DoseRange,
    DrugClass,
    Ingredient,
    InteractionSpec,
    KnowledgeData,
    Source,
)
from medhub.cds.medication_model import RXNORM_SYSTEM, DrugRef
from medhub.cds.medication_names import NameIndex

#: Code systems taken to be RxNorm: the FHIR URI, its OID (CDA, v2) and v2 names.
RXNORM_SYSTEMS: Final = frozenset(
    {RXNORM_SYSTEM, f"{RXNORM_SYSTEM}/", "urn:oid:2.16.840.1.113883.6.88", "rxnorm", "rxn"}
)
_CACHE_LIMIT: Final = 20_000


class KnowledgeBase:
    """Indexed, immutable medication knowledge; build with :func:`load_default_knowledge`."""

    def __init__(self, data: KnowledgeData) -> None:
        self.data = data
        self.version = data.version
        self.sources: Mapping[str, Source] = {s.id: s for s in data.sources}
        self._classes = {c.name: c for c in data.classes}
        self._ingredients = {i.rxcui: i for i in data.ingredients}
        members: dict[str, set[str]] = {name: set() for name in self._classes}
        for ingredient in data.ingredients:
            for name in ingredient.classes:
                members[name].add(ingredient.rxcui)
        self._members = {name: frozenset(rxcuis) for name, rxcuis in members.items()}
        self._classes_of = {i.rxcui: frozenset(i.classes) for i in data.ingredients}
        self._codes = {rxcui: frozenset({rxcui}) for rxcui in self._ingredients}
        self._codes.update({p.rxcui: frozenset(p.ingredients) for p in data.products if p.rxcui})
        self._names = NameIndex.build(self._name_entries())
        self._class_names = NameIndex.build(
            (synonym, frozenset({c.name}))
            for c in data.classes
            for synonym in (c.name, c.label, *c.synonyms)
        )
        self._pairs = self._index_interactions(data.interactions)
        self._cross = {(c.allergy_class, c.drug_class): c for c in data.cross_reactivity}
        doses: dict[str, list[DoseRange]] = {}
        for dose in data.dose_ranges:
            doses.setdefault(dose.rxcui, []).append(dose)
        self._doses = {rxcui: tuple(ranges) for rxcui, ranges in doses.items()}
        self._resolved: dict[DrugRef, frozenset[str]] = {}

    def _name_entries(self) -> Iterable[tuple[str, frozenset[str]]]:
        for ingredient in self.data.ingredients:
            for name in (ingredient.name, *ingredient.synonyms):
                yield name, frozenset({ingredient.rxcui})
        for product in self.data.products:
            for name in product.names:
                yield name, frozenset(product.ingredients)

    def _index_interactions(
        self, specs: tuple[InteractionSpec, ...]
    ) -> dict[tuple[str, str], tuple[int, ...]]:
        pairs: dict[tuple[str, str], list[int]] = {}
        for index, spec in enumerate(specs):
            for a in self.expand(spec.a):
                for b in self.expand(spec.b):
                    if a != b:
                        rules = pairs.setdefault((a, b) if a < b else (b, a), [])
                        if index not in rules:
                            rules.append(index)
        return {pair: tuple(rules) for pair, rules in pairs.items()}

    # -- resolution ------------------------------------------------------------------

    def resolve(self, drug: DrugRef) -> frozenset[str]:
        """The ingredient RxCUIs of a drug as sent; empty when the base does not know it.

        RxNorm codes are tried first (ingredient, SCD or MIN RxCUIs). When none is
        known, the text and then each coding's display are matched by name
        (case-insensitive, brand names included, strength and form ignored): the
        first of them that names a known drug wins.
        """
        cached = self._resolved.get(drug)
        if cached is not None:
            return cached
        found = self._resolve_codes(drug) or self._first_name_match(drug, self._names)
        if len(self._resolved) >= _CACHE_LIMIT:
            self._resolved.clear()
        self._resolved[drug] = found
        return found

    def resolve_allergy(self, substance: DrugRef) -> tuple[frozenset[str], frozenset[str]]:
        """An allergy's ingredients and the classes it names (``"Penicillins"``, ``"Sulfa"``)."""
        ingredients = self.resolve(substance)
        classes = self._first_name_match(substance, self._class_names)
        return ingredients, classes

    def _resolve_codes(self, drug: DrugRef) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for coding in drug.codes:
            if coding.system.strip().lower() in RXNORM_SYSTEMS:
                found = found | self._codes.get(coding.code.strip(), frozenset())
        return found

    @staticmethod
    def _first_name_match(drug: DrugRef, index: NameIndex) -> frozenset[str]:
        texts = [drug.text] + [coding.display for coding in drug.codes]
        for text in texts:
            if text:
                found = index.scan(text)
                if found:
                    return found
        return frozenset()

    def lookup_term(self, term: str) -> tuple[str, ...]:
        """An interaction term as written in a CSV, as canonical terms; empty when unknown.

        ``class:<name>`` -> itself if the class exists; digits -> that RxCUI (an
        RxCUI the base does not ship is accepted: the site's licence may cover
        drugs medhub does not); a name -> the RxCUIs of the ingredients it names.
        """
        term = term.strip()
        if term.startswith(CLASS_PREFIX):
            name = term.removeprefix(CLASS_PREFIX).strip()
            return (CLASS_PREFIX + name,) if name in self._classes else ()
        if term.isdigit():
            return tuple(sorted(self._codes.get(term, frozenset({term}))))
        return tuple(sorted(self._names.exact(term)))

    # -- lookups ------------------------------------------------------------------------

    def ingredient(self, rxcui: str) -> Ingredient | None:
        """The ingredient record, or None for an RxCUI the base does not know."""
        return self._ingredients.get(rxcui)

    def ingredient_name(self, rxcui: str) -> str:
        """``"11289"`` -> ``"warfarin"``; an unknown RxCUI is shown as ``"RxCUI 11289"``."""
        known = self._ingredients.get(rxcui)
        return known.name if known else f"RxCUI {rxcui}"

    def drug_class(self, name: str) -> DrugClass | None:
        """The class record (``"penicillin"``), or None."""
        return self._classes.get(name)

    def classes_of(self, rxcui: str) -> frozenset[str]:
        """The classes an ingredient belongs to (``"1191"`` -> nsaid, antiplatelet)."""
        return self._classes_of.get(rxcui, frozenset())

    def classes_of_all(self, rxcuis: Iterable[str]) -> frozenset[str]:
        """The union of the classes of several ingredients (a combination product)."""
        found: set[str] = set()
        for rxcui in rxcuis:
            found.update(self._classes_of.get(rxcui, ()))
        return frozenset(found)

    def members(self, class_name: str) -> frozenset[str]:
        """The ingredient RxCUIs of a class; empty for an unknown class."""
        return self._members.get(class_name, frozenset())

    def expand(self, terms: Iterable[str]) -> frozenset[str]:
        """Interaction terms (RxCUIs and ``class:<name>``) as the ingredient RxCUIs they cover."""
        found: set[str] = set()
        for term in terms:
            if term.startswith(CLASS_PREFIX):
                found.update(self.members(term.removeprefix(CLASS_PREFIX)))
            else:
                found.add(term)
        return frozenset(found)

    def interactions_between(self, first: str, second: str) -> tuple[InteractionSpec, ...]:
        """Every rule covering two ingredients, in knowledge-base order (either argument order)."""
        key = (first, second) if first < second else (second, first)
        return tuple(self.data.interactions[i] for i in self._pairs.get(key, ()))

    def interaction_rule_ids(self, first: str, second: str) -> tuple[int, ...]:
        """Like :meth:`interactions_between`, as positions in ``data.interactions``."""
        return self._pairs.get((first, second) if first < second else (second, first), ())

    def cross_reactivity(self, allergy_class: str, drug_class: str) -> CrossReactivity | None:
        """The warning an allergy to ``allergy_class`` gives against ``drug_class``, if any."""
        return self._cross.get((allergy_class, drug_class))

    def dose_ranges(self, rxcui: str) -> tuple[DoseRange, ...]:
        """The adult dose ranges of an ingredient (one per route group); empty if none."""
        return self._doses.get(rxcui, ())

    def counts(self) -> dict[str, int]:
        """How much the base holds, for logs, docs and the health page."""
        data = self.data
        return {
            "ingredients": len(data.ingredients),
            "products": len(data.products),
            "classes": len(data.classes),
            "interactions": len(data.interactions),
            "interaction_pairs": len(self._pairs),
            "cross_reactivity": len(data.cross_reactivity),
            "dose_ranges": len(data.dose_ranges),
            "sources": len(data.sources),
        }

    def with_interactions(self, specs: Iterable[InteractionSpec]) -> KnowledgeBase:
        """A new base with ``specs`` added after the shipped rules; unknown RxCUIs become
        ingredients known by code only."""
        added = tuple(specs)
        known = set(self._ingredients)
        extra = sorted(
            t
            for spec in added
            for t in (*spec.a, *spec.b)
            if not t.startswith(CLASS_PREFIX) and t not in known
        )
        new = tuple(Ingredient(rxcui, f"RxCUI {rxcui}") for rxcui in dict.fromkeys(extra))
        data = self.data
        return KnowledgeBase(
            KnowledgeData(
                data.version,
                data.sources,
                data.classes,
                data.ingredients + new,
                data.products,
                data.interactions + added,
                data.cross_reactivity,
                data.dose_ranges,
            )
        )


@functools.cache
def load_default_knowledge() -> KnowledgeBase:
    """The knowledge base shipped with medhub, read and indexed once per process."""
    return KnowledgeBase(read_packaged_knowledge())


def load_interactions_csv(text: str, *, base: KnowledgeBase, source_name: str) -> KnowledgeBase:
    """``base`` plus a site's licensed interaction pairs (format in docs/medication-safety.md).

    Raises :class:`medhub.errors.InputError` naming the line and column of the first
    bad row; nothing is added unless every row is valid.
    """
    specs = parse_interactions_csv(text, lookup=base.lookup_term, source_name=source_name)
    return base.with_interactions(specs)
