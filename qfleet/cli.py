"""The ``qfleet`` console script: a small dispatcher to each package's own CLI."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Command group -> module whose ``main(argv)`` runs it. Imported lazily: `qfleet db current`
# must not pay for the simulator's imports.
COMMANDS = {
    "db": "qfleet.collector.cli",
    "collector": "qfleet.collector.cli",
    "demo": "qfleet.demo",
    "sim": "qfleet.simulator.cli",
    "slo": "qfleet.slo.cli",
    "alerts": "qfleet.alerts.cli",
    "serve": "qfleet.serve",
    "gameday": "qfleet.runbooks.cli",
    "dashboards": "qfleet.dashboards.cli",
    "postmortem": "qfleet.runbooks.cli",
    "incidents": "qfleet.runbooks.cli",
}

USAGE = """usage: qfleet COMMAND ...

commands:
  demo        the bad-day game day end to end on ./qfleet.db, then the dashboards
  db          schema migrations (upgrade, downgrade, current), retention (prune), rollups
  collector   the OTLP/HTTP receiver (serve)
  sim         the fleet simulator (run, experiment, chain)
  slo         SLOs: validate specs, evaluate budgets and burn rates, export Prometheus rules
  alerts      alert routing previews, timeline replays, silences, acknowledgements, incidents
  serve       the collector plus SLO evaluation, alert rules and notification delivery, in one process
  gameday     run a game-day scenario end to end and score detection (run, list)
  postmortem  export an incident's postmortem (md, json, html with charts)
  incidents   list incidents
  dashboards  the Streamlit exec, on-call and debug views (127.0.0.1:8501)

Run `qfleet COMMAND --help` for a command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qfleet`` script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    module = COMMANDS.get(args[0])
    if module is None:
        print(f"qfleet: unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("qfleet").setLevel(logging.INFO)  # every package logs under qfleet.<package>.<module>
    mod = importlib.import_module(module)
    # These CLIs serve several command groups and need the group name.
    return int(mod.main(args if module in ("qfleet.collector.cli", "qfleet.runbooks.cli") else args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
