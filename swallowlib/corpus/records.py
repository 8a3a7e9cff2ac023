"""The records every corpus step passes along: a monolingual :class:`Document` and a parallel :class:`Pair`.

A *document* is a whole page-sized unit (one man page, one manual page, one package description), because the
Swallow thresholds (>= 400 characters, sentence statistics, repetition) assume page-sized documents. A *pair* is one
aligned English/Japanese paragraph (or UI string).

``group`` is the unit of the train/valid/test split. It is chosen so that a text and its translation share it
(e.g. ``man:clone.2`` for both the English and the Japanese clone(2) page, ``ddtp:<package>`` for a package
description in both languages), so held-out text never has its translation in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Document:
    """One monolingual document."""

    id: str  # unique and stable across runs, e.g. "manpages-ja/man2/clone.2"
    text: str
    lang: str  # "ja" | "en"
    source: str  # catalogue (or local/hub) source name
    group: str  # split unit; identical for a text and its translation
    meta: dict[str, Any] = field(default_factory=dict)  # package, version, path, format, …

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Pair:
    """One aligned English/Japanese segment."""

    id: str
    en: str
    ja: str
    source: str
    group: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
