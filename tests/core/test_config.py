from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import BUNDLED_MODEL, Settings


def test_local_state_lives_under_home(tmp_path: Path) -> None:
    settings = Settings(HOME=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'mhogo.db'}"
    assert settings.blob_dir == tmp_path / "blobs"
    assert settings.model_dir == tmp_path / "models"


def test_urls_point_elsewhere(tmp_path: Path) -> None:
    settings = Settings(HOME=tmp_path, DATABASE_URL="postgresql://db/mhogo", REDIS_URL="redis://cache:6379/1")
    assert settings.database_url == "postgresql://db/mhogo"
    assert settings.REDIS_URL == "redis://cache:6379/1"


def test_every_setting_is_read_from_a_prefixed_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MHOGO_HOME", str(tmp_path))
    monkeypatch.setenv("MHOGO_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("MHOGO_DARK_LUMA", "12.5")
    settings = Settings()
    assert tmp_path.resolve() == settings.HOME
    assert settings.MAX_UPLOAD_BYTES == 1234
    assert settings.quality_thresholds.dark_luma == 12.5


def test_home_is_expanded() -> None:
    assert Path("~/x").expanduser().resolve() == Settings(HOME=Path("~/x")).HOME


def test_serving_model_defaults_to_the_committed_baseline(tmp_path: Path) -> None:
    assert Settings(HOME=tmp_path).model_path == BUNDLED_MODEL
    assert BUNDLED_MODEL.is_file()
    assert BUNDLED_MODEL.stat().st_size <= 40 * 1024 * 1024  # two backbones (Lite1 + Lite2): 35 MB


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(MAX_UPLOAD_BYTES=0)
    with pytest.raises(ValidationError):
        Settings(MIN_SIDE_PX=-1)
