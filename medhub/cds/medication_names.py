"""Drug names in free text: normalisation and a longest-match phrase index.

Prescriptions and allergy lists often arrive without an RxNorm code: an HL7 v2
RXE-2 with a local code, a FHIR ``CodeableConcept`` with only ``text``, or an
SCD display such as ``"warfarin sodium 5 MG Oral Tablet"``. The knowledge base
therefore also recognises drugs by name. Names are compared as token sequences:
lower case, accents dropped, every run of non-alphanumerics a separator (so
``"Co-trimoxazole"`` and ``"co trimoxazole"`` agree). Strength, dose form and
route words simply match nothing and are skipped.

Matching scans the tokens once and at each position takes the longest indexed
phrase (``"isosorbide dinitrate"`` beats ``"isosorbide"``), so a combination
display yields every ingredient it names. Pure and fast: a dict lookup per
token and phrase length, built once when the knowledge base loads.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Final

_SEPARATORS: Final = re.compile(r"[^a-z0-9]+")


def name_tokens(text: str) -> tuple[str, ...]:
    """``"Penicillin V-Potassium 250 MG"`` -> ``("penicillin", "v", "potassium", "250", "mg")``."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    ascii_only = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return tuple(token for token in _SEPARATORS.split(ascii_only) if token)


class NameIndex:
    """Phrases (token tuples) to the values they stand for; see the module docstring."""

    __slots__ = ("_longest", "_phrases")

    def __init__(self, phrases: Mapping[tuple[str, ...], frozenset[str]]) -> None:
        self._phrases = dict(phrases)
        self._longest = max((len(phrase) for phrase in self._phrases), default=0)

    @classmethod
    def build(cls, entries: Iterable[tuple[str, frozenset[str]]]) -> NameIndex:
        """Index ``(name, values)`` pairs; a name given twice gets the union of its values."""
        phrases: dict[tuple[str, ...], frozenset[str]] = {}
        for name, values in entries:
            tokens = name_tokens(name)
            if tokens:
                phrases[tokens] = phrases.get(tokens, frozenset()) | values
        return cls(phrases)

    def __contains__(self, name: str) -> bool:
        return name_tokens(name) in self._phrases

    def __len__(self) -> int:
        return len(self._phrases)

    def exact(self, name: str) -> frozenset[str]:
        """The values of exactly this name (no scanning), or empty."""
        return self._phrases.get(name_tokens(name), frozenset())

    def scan(self, text: str) -> frozenset[str]:
        """Every value whose phrase occurs in ``text``, longest match first at each token."""
        tokens = name_tokens(text)
        found: set[str] = set()
        position = 0
        while position < len(tokens):
            step = 1
            for length in range(min(self._longest, len(tokens) - position), 0, -1):
                values = self._phrases.get(tokens[position : position + length])
                if values is not None:
                    found.update(values)
                    step = length
                    break
            position += step
        return frozenset(found)
