"""`mhogo users` and `mhogo dataset` through the real CLI: a person added with a password from standard input and a
token as the last line; the snapshot -> export -> `mhogo train --data` round trip, the model naming the version."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlmodel import Session

from core.config import settings
from core.db import open_database
from core.users import user_for_token
from mhogo.cli import main
from ml.checkpoint import load_checkpoint


def test_users_add_token_list_and_disable() -> None:
    added = CliRunner().invoke(main, ["users", "add", "Zawadi", "--role", "agronomist", "--password-stdin"],
                               input="a long enough password\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    short = CliRunner().invoke(main, ["users", "add", "Yusuf", "--role", "operator", "--password-stdin"], input="x\n")
    assert short.exit_code != 0
    assert "10" in short.output
    token = CliRunner().invoke(main, ["users", "token", "Zawadi"])
    assert token.exit_code == 0, token.output
    secret = token.stdout.strip().splitlines()[-1]
    with Session(open_database(settings.database_url)) as session:
        user = user_for_token(session, secret)
        assert user is not None
        assert (user.name, user.role) == ("Zawadi", "agronomist")
    assert "Zawadi" in CliRunner().invoke(main, ["users", "list"]).stdout
    assert CliRunner().invoke(main, ["users", "disable", "Zawadi"]).exit_code == 0
    with Session(open_database(settings.database_url)) as session:
        assert user_for_token(session, secret) is None


def test_snapshot_export_and_train_on_it_round_trip(samples: Path, tmp_path: Path) -> None:
    imported = CliRunner().invoke(main, ["dataset", "import", str(samples)])
    assert imported.exit_code == 0, imported.output
    made = CliRunner().invoke(main, ["dataset", "snapshot"])
    assert made.exit_code == 0, made.output
    version = made.stdout.strip().splitlines()[-1]
    assert version.startswith("ds-")
    assert CliRunner().invoke(main, ["dataset", "snapshot"]).stdout.strip().splitlines()[-1] == version
    assert version in CliRunner().invoke(main, ["dataset", "list"]).stdout
    same = CliRunner().invoke(main, ["dataset", "diff", version, version])
    assert json.loads(same.stdout) == {}
    out = tmp_path / "export"
    exported = CliRunner().invoke(main, ["dataset", "export", version, str(out)])
    assert exported.exit_code == 0, exported.output
    model = tmp_path / "m.pt"
    trained = CliRunner().invoke(main, ["train", "--data", str(out), "--out", str(model), "--dry-run"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout.strip().splitlines()[-1])["dataset_version"] == version
    assert load_checkpoint(model).meta["dataset_version"] == version
    next(out.rglob("*.jpg")).unlink()
    refused = CliRunner().invoke(main, ["train", "--data", str(out), "--out", str(model), "--dry-run"])
    assert refused.exit_code != 0
    assert "does not hold what its MANIFEST.csv says" in refused.output
