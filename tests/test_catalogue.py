"""The catalogue of farmer-facing strings: every language has exactly the source's keys, with the same `{placeholders}`;
every label, reason and key the code names is in it; the server's English answers are the catalogue's words."""

from __future__ import annotations

import re

import pytest

from schemas import catalogue
from schemas.labels import Label
from schemas.reasons import RejectReason

PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


@pytest.mark.parametrize("language", catalogue.LANGUAGES)
def test_every_language_has_the_source_s_keys_and_placeholders(language: str) -> None:
    source, translated = catalogue.strings("en"), catalogue.strings(language)
    assert set(translated) == set(source)
    for key, words in translated.items():
        assert words.strip(), key
        assert sorted(PLACEHOLDER.findall(words)) == sorted(PLACEHOLDER.findall(source[key])), key
    about = catalogue.meta(language)
    assert about["language"] == language
    assert about["name"]
    assert isinstance(about["checked_by_native_speaker"], bool)


def test_labels_and_reasons_speak_the_catalogue_s_words() -> None:
    for label in Label:
        assert label.info.name == catalogue.text(f"label.{label.value}.name")
        assert label.info.advice == catalogue.text(f"label.{label.value}.advice")
    for reason in RejectReason:
        assert reason.message == catalogue.text(f"reason.{reason.value}")


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(KeyError):
        catalogue.strings("xx")
