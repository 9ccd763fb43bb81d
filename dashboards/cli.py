"""``qfleet dashboards [--db URL] [--port 8501] [--host 127.0.0.1]``: serve the Streamlit app headless."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from qfleet.collector.settings import ENV_DATABASE_URL, Settings, SettingsError

__all__ = ["command", "main"]

APP = Path(__file__).resolve().parent / "app.py"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qfleet dashboards", description="Serve the exec, on-call and debug dashboards.")
    p.add_argument("--db", help=f"store URL (default ${ENV_DATABASE_URL} or sqlite:///qfleet.db)")
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or $QFLEET_HOST)")
    return p


def command(settings: Settings, port: int) -> list[str]:
    """The ``streamlit run`` command line serving the app headless on ``settings.host:port``."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.headless", "true", "--server.address", settings.host, "--server.port", str(port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--", "--db", settings.database_url]


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         run: Callable[..., int] = subprocess.call) -> int:
    """Run ``qfleet dashboards``; returns the exit status of Streamlit (2 for a bad setting)."""
    args = _parser().parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    try:
        settings = Settings.from_env(env, database_url=args.db, host=args.host)
    except SettingsError as e:
        print(f"qfleet dashboards: {e}", file=sys.stderr)
        return 2
    env[ENV_DATABASE_URL] = settings.database_url
    print(f"qfleet dashboards: serving {APP.name} on http://{settings.host}:{args.port}/ "
          f"(store {settings.database_url.split('@')[-1]})", file=sys.stderr)
    return int(run(command(settings, args.port), env=env))


if __name__ == "__main__":
    raise SystemExit(main())
