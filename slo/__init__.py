"""SLIs, error budgets and multiwindow multi-burn-rate alerting over the store, exact to the SRE Workbook.

* :mod:`slo.model`: frozen values (targets as Fractions, times as integer ns).
* :mod:`slo.spec`: OpenSLO v1 files with the ``qfleet.dev/v1`` extension, validated with every problem at once.
* :mod:`slo.budget` / :mod:`slo.periods`: the pure maths (windows, burn rates, pairs, budgets, calendars).
* :mod:`slo.sli` / :mod:`slo.evaluate`: counts from the store's rollups, evaluation and its history.
* :mod:`slo.rules`: Prometheus recording and alerting rules.
"""

from slo.budget import StepCounts, evaluate_slo, read_samples_csv, report_json
from slo.evaluate import evaluate_store, record
from slo.model import SLO, AlertPolicy, Counts, Pair, Period, SLOReport
from slo.periods import period_bounds
from slo.rules import prometheus_rules, rules_yaml
from slo.sli import SliSource
from slo.spec import SpecError, Validation, builtin_specs_path, load_policy, load_slos, validate_file

__all__ = [
    "SLO",
    "AlertPolicy",
    "Counts",
    "Pair",
    "Period",
    "SLOReport",
    "SliSource",
    "SpecError",
    "StepCounts",
    "Validation",
    "builtin_specs_path",
    "evaluate_slo",
    "evaluate_store",
    "load_policy",
    "load_slos",
    "period_bounds",
    "prometheus_rules",
    "read_samples_csv",
    "record",
    "report_json",
    "rules_yaml",
    "validate_file",
]
