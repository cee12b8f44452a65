"""The ``MEDHUB_*`` environment names medhub reads, to catch misspelt ones in ``deploy/``.

pydantic-settings ignores a variable it does not know (``extra="ignore"``), so
a misspelt setting in a compose file, a ConfigMap or an ``EnvironmentFile``
would be silently without effect. The names it does know are derived here
from :class:`medhub.config.Settings` itself (field names, validation aliases,
``__``-joined nested settings) plus the few variables the code reads straight
from ``os.environ``, so the list cannot drift from the code.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel

from medhub.config import Settings

PACKAGE = Path(__file__).resolve().parents[1] / "medhub"
_NAME = re.compile(r"\bMEDHUB_[A-Z0-9_]*[A-Z0-9]")
_ENVIRON_READ = re.compile(
    r"""(?:environ(?:\.get)?\s*[(\[]|getenv\s*\()\s*["'](MEDHUB_[A-Z0-9_]+)"""
)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel a field holds (``X | None`` unwrapped); lists are JSON, not nested."""
    if get_origin(annotation) in (Union, UnionType):
        models = [m for m in map(_model_of, get_args(annotation)) if m is not None]
        return models[0] if models else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def setting_names(model: type[BaseModel] = Settings, prefix: str = "MEDHUB_") -> set[str]:
    """Environment names pydantic-settings reads for ``model``: fields, aliases, ``__`` parts."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):  # an alias replaces the prefixed field name
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name.upper()}")
        nested = _model_of(info.annotation)
        if nested is not None:
            names |= setting_names(nested, f"{prefix}{name.upper()}__")
    return {n for n in names if n.startswith("MEDHUB_")}


def environ_reads(package: Path = PACKAGE) -> set[str]:
    """``MEDHUB_*`` variables read with ``os.environ`` / ``os.getenv`` outside Settings."""
    return {m for path in package.rglob("*.py") for m in _ENVIRON_READ.findall(path.read_text())}


@cache
def known_names() -> frozenset[str]:
    return frozenset(setting_names() | environ_reads())


def unknown_names(text: str, known: frozenset[str]) -> set[str]:
    return set(_NAME.findall(text)) - known
