"""The ``qfleet.alerts`` namespace loads lazily: ``qfleet alerts routes test`` needs the config and the routing
tree, not the store, the collector, the OpenTelemetry SDK, HTTP delivery or the SLO engine (issue 11: a fast CLI)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qfleet.alerts

HEAVY = ("sqlalchemy", "opentelemetry", "httpx", "http.client", "qfleet.collector", "qfleet.slo",
         "qfleet.alerts.outbox", "qfleet.alerts.webhook", "qfleet.alerts.schema", "qfleet.alerts.service")


def _loaded_after(code: str) -> list[str]:
    probe = (f"import sys; {code}; print('\\n'.join(sorted(m for m in sys.modules if any("
             f"m == h or m.startswith(h + '.') for h in {HEAVY!r}))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()


@pytest.mark.parametrize("code", [
    "import qfleet.alerts",
    "import qfleet.alerts.config, qfleet.alerts.routing",
    "from qfleet.alerts.config import load_config; from qfleet.alerts.routing import routes_test; "
    "from importlib.resources import files; "
    "print(routes_test(load_config(str(files('qfleet.alerts') / 'alerting.yaml')), {'severity': 'page'}), "
    "file=sys.stderr)",
    "from qfleet.alerts import parse_matcher, Matcher, resolve",
    "from qfleet.alerts.timeline import replay",
], ids=["package", "config and routing", "routes test", "package names", "replay"])
def test_routing_imports_nothing_heavy(code: str) -> None:
    assert _loaded_after(code) == []


def test_a_heavy_name_still_loads_on_first_use() -> None:
    assert "sqlalchemy" in _loaded_after("from qfleet.alerts import Outbox")


def test_every_exported_name_resolves() -> None:
    for name in qfleet.alerts.__all__:
        assert getattr(qfleet.alerts, name) is not None, name
    assert {"ConfigError", "load_config", "parse_matcher", "resolve", "routes_test", "AlertService", "Deliverer",
            "Outbox", "Incidents", "load_rules", "AlertRulesError", "MatcherError"} <= set(qfleet.alerts.__all__)
