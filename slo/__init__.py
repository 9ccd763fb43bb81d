"""SLIs, error budgets and multiwindow multi-burn-rate alerting over the store, exact to the SRE Workbook.

* :mod:`qfleet.slo.model`: frozen values (targets as Fractions, times as integer ns).
* :mod:`qfleet.slo.spec`: OpenSLO v1 files with the ``qfleet.dev/v1`` extension, validated with every problem at once
  (its parts in ``spec_fields``, ``spec_indicators``, ``spec_objectives``, ``spec_extension``).
* :mod:`qfleet.slo.budget` / :mod:`qfleet.slo.periods`: the pure maths (windows, burn rates, pairs, budgets, calendars).
* :mod:`qfleet.slo.sli` / :mod:`qfleet.slo.evaluate`: counts from the store's rollups, evaluation and its history
  (the tables ``slo_counts`` and ``slo_evaluations`` of :mod:`qfleet.slo.schema`, which only this package writes).
* :mod:`qfleet.slo.rules`: Prometheus recording and alerting rules.

The names below load on first use (lazy_loader), so that reading a spec imports neither SQLAlchemy nor the
collector.
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "budget": ["StepCounts", "evaluate_slo", "read_samples_csv", "report_json"],
    "evaluate": ["evaluate_store", "record"],
    "model": ["SLO", "AlertPolicy", "Counts", "Pair", "Period", "SLOReport"],
    "periods": ["period_bounds"],
    "rules": ["RuleExportError", "prometheus_rules", "rules_yaml"],
    "sli": ["SliSource"],
    "spec": ["SpecError", "Validation", "builtin_specs_path", "load_policy", "load_slos", "validate_file"],
})

if TYPE_CHECKING:  # the same names, for type checkers (which do not run __getattr__)
    from qfleet.slo.budget import StepCounts as StepCounts
    from qfleet.slo.budget import evaluate_slo as evaluate_slo
    from qfleet.slo.budget import read_samples_csv as read_samples_csv
    from qfleet.slo.budget import report_json as report_json
    from qfleet.slo.evaluate import evaluate_store as evaluate_store
    from qfleet.slo.evaluate import record as record
    from qfleet.slo.model import SLO as SLO
    from qfleet.slo.model import AlertPolicy as AlertPolicy
    from qfleet.slo.model import Counts as Counts
    from qfleet.slo.model import Pair as Pair
    from qfleet.slo.model import Period as Period
    from qfleet.slo.model import SLOReport as SLOReport
    from qfleet.slo.periods import period_bounds as period_bounds
    from qfleet.slo.rules import RuleExportError as RuleExportError
    from qfleet.slo.rules import prometheus_rules as prometheus_rules
    from qfleet.slo.rules import rules_yaml as rules_yaml
    from qfleet.slo.sli import SliSource as SliSource
    from qfleet.slo.spec import SpecError as SpecError
    from qfleet.slo.spec import Validation as Validation
    from qfleet.slo.spec import builtin_specs_path as builtin_specs_path
    from qfleet.slo.spec import load_policy as load_policy
    from qfleet.slo.spec import load_slos as load_slos
    from qfleet.slo.spec import validate_file as validate_file
