"""Every string a farmer reads, in one place: `schemas/catalogue/<language>.json`, one flat file per language
(disease names and advice, why a photo was turned away, and the app's own words). The server's answers (English)
and the farmer's app (every language, shipped with the app) read the same files: no string is written twice.

English is the source; every other file has exactly its keys (tests/test_catalogue.py), and its `_meta` says
whether a native speaker has checked it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).parent / "catalogue"
SOURCE = "en"
LANGUAGES = ("en", "sw", "fr", "rw", "lg")  # English, Kiswahili, Français, Ikinyarwanda, Luganda


@cache
def strings(language: str = SOURCE) -> dict[str, str]:
    """The language's strings by key (without `_meta`)."""
    if language not in LANGUAGES:
        raise KeyError(f"no catalogue for {language!r}: one of {', '.join(LANGUAGES)}")
    found: dict[str, Any] = json.loads((FOLDER / f"{language}.json").read_text(encoding="utf-8"))
    return {key: value for key, value in found.items() if key != "_meta"}


@cache
def meta(language: str) -> dict[str, Any]:
    """Who speaks it and whether a native speaker checked it: the file's `_meta`."""
    found: dict[str, Any] = json.loads((FOLDER / f"{language}.json").read_text(encoding="utf-8"))
    return dict(found["_meta"])


def text(key: str, language: str = SOURCE) -> str:
    """One string; a key the catalogue lacks is a KeyError (tests check every key the code names)."""
    return strings(language)[key]
