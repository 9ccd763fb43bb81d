"""`qfleet db …` and settings, run in-process through the real CLI entry points."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from qfleet.cli import main as qfleet_main
from qfleet.collector.cli import main
from qfleet.collector.migrate import head_revisions
from qfleet.collector.settings import Settings, SettingsError, load_token
from qfleet.collector.store import Store, open_engine
from qfleet.units import NS
from tests.collector.test_store import spans_at
from tests.conftest import FakeClock

NOW = 1_800_000_000 * NS  # "now" for retention: a fixed instant, never the machine's clock
DAY = 86_400 * NS


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=environ or {}, stdout=out, stderr=err, clock=FakeClock(NOW))
    return code, out.getvalue(), err.getvalue()


def test_db_upgrade_current_downgrade_round_trip(db_url: str) -> None:
    code, out, err = run(["db", "current", "--db", db_url])
    if db_url.startswith("sqlite"):   # a reader creates no file: the missing store is named, with the fix
        assert code == 2 and "qfleet db upgrade" in err
    else:
        assert code == 0 and out.startswith("base (empty) (behind head")
    code, out, _ = run(["db", "upgrade", "20261126_0001", "--db", db_url])
    assert code == 0 and "at revision 20261126_0001" in out
    assert run(["db", "current", "--db", db_url])[1].startswith(f"20261126_0001 (behind head {head_revisions()[0]}")
    code, out, _ = run(["db", "upgrade", "--db", db_url])
    assert code == 0 and f"at revision {head_revisions()[0]}" in out
    assert run(["db", "current", "--db", db_url])[1] == f"{head_revisions()[0]} (up to date)\n"
    code, out, _ = run(["db", "downgrade", "base", "--db", db_url])
    assert code == 0 and out.endswith("at revision base\n")


def test_environment_chooses_the_database_and_the_flag_wins(tmp_path: Path) -> None:
    env_db, flag_db = tmp_path / "env.db", tmp_path / "flag.db"
    run(["db", "upgrade"], {"QFLEET_DATABASE_URL": f"sqlite:///{env_db}"})
    assert env_db.exists() and not flag_db.exists()
    run(["db", "upgrade", "--db", f"sqlite:///{flag_db}"], {"QFLEET_DATABASE_URL": f"sqlite:///{env_db}"})
    assert flag_db.exists()


def test_prune_command(sqlite_url: str) -> None:
    run(["db", "upgrade", "--db", sqlite_url])
    engine = open_engine(sqlite_url)
    Store(engine).write(spans_at([NOW - 30 * DAY, NOW - 13 * DAY, NOW - 60 * NS], prefix=1))
    code, out, _ = run(["db", "prune", "--older-than", "14d", "--db", sqlite_url])
    # The horizon: 14 days before the newest span (NOW - 60 s = 2027-01-01T08:00:00Z - 60 s), by hand.
    assert (code, out) == (0, "pruned 1 spans, 0 span events, 0 span links, 0 samples older than "
                              "2027-01-01T07:59:00Z (14d before the newest data)\n")
    assert Store(engine).count("spans") == 2
    # Prometheus' grammar: several units, largest first (the old parser refused this).
    code, out, _ = run(["db", "prune", "--older-than", "1w5d12h", "--db", sqlite_url])
    assert code == 0 and out.startswith("pruned 1 spans")
    assert Store(engine).count("spans") == 1


@pytest.mark.parametrize(("value", "fix"), [
    ("two weeks", "1h30m"), ("14", "1h30m"), ("5m5m", "largest first, each once"), ("1.5d", "write 1d12h"),
    ("0", "e.g. 14d"),
], ids=["words", "no unit", "unit twice", "fraction", "zero"])
def test_prune_refuses_a_bad_horizon_in_one_line_naming_value_and_fix(sqlite_url: str, value: str,
                                                                       fix: str) -> None:
    run(["db", "upgrade", "--db", sqlite_url])
    code, out, err = run(["db", "prune", "--older-than", value, "--db", sqlite_url])
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("qfleet db prune: --older-than")
    assert (f"{value!r}" in err or f" {value} " in err) and fix in err


def test_bad_database_url_is_named_with_the_fix() -> None:
    code, _, err = run(["db", "current", "--db", "qfleet.db"])
    assert code == 2 and "'qfleet.db' has no scheme" in err and "sqlite:///" in err


def test_rollup_command(sqlite_url: str) -> None:
    run(["db", "upgrade", "--db", sqlite_url])
    Store(open_engine(sqlite_url)).write(spans_at([NOW, NOW + 61 * NS], prefix=2))
    assert run(["db", "rollup", "--db", sqlite_url])[1] == "recomputed 2 span and 0 metric minute buckets\n"


def test_qfleet_dispatcher(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert qfleet_main([]) == 2
    assert qfleet_main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QFLEET_DATABASE_URL", raising=False)
    assert qfleet_main(["db", "upgrade"]) == 0
    assert (tmp_path / "qfleet.db").exists()  # the default database is ./qfleet.db


def test_settings_validation() -> None:
    with pytest.raises(SettingsError, match="'0.0.0.x' is not an IP address"):
        Settings(host="0.0.0.x")
    s = Settings.from_env({"QFLEET_HOST": "127.0.0.2", "QFLEET_TOKEN_FILE": "/tmp/t"}, host=None)
    assert (s.host, s.token_file) == ("127.0.0.2", Path("/tmp/t"))


def test_token_file_is_created_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = load_token(path)
    assert len(token) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_token(path) == token
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_token(path)
    with pytest.raises(SettingsError, match="does not exist"):
        load_token(tmp_path / "missing", create=False)
