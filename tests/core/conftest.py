"""Fixtures of the core tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test configures the root logger as a service would; put it back as it was for the rest of the suite."""
    monkeypatch.setattr("core.logs._service", None)
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == "mhogo"]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
