"""SLIs, error budgets and multiwindow multi-burn-rate alerting over the store, exact to the SRE Workbook.

* :mod:`qfleet.slo.model`: frozen values (targets as Fractions, times as integer ns).
* :mod:`qfleet.slo.spec`: OpenSLO v1 files with the ``qfleet.dev/v1`` extension, validated with every problem at once.
* :mod:`qfleet.slo.budget` / :mod:`qfleet.slo.periods`: the pure maths (windows, burn rates, pairs, budgets, calendars).
* :mod:`qfleet.slo.sli` / :mod:`qfleet.slo.evaluate`: counts from the store's rollups, evaluation and its history.
* :mod:`qfleet.slo.rules`: Prometheus recording and alerting rules.
"""

from qfleet.slo.budget import StepCounts, evaluate_slo, read_samples_csv, report_json
from qfleet.slo.evaluate import evaluate_store, record
from qfleet.slo.model import SLO, AlertPolicy, Counts, Pair, Period, SLOReport
from qfleet.slo.periods import period_bounds
from qfleet.slo.rules import prometheus_rules, rules_yaml
from qfleet.slo.sli import SliSource
from qfleet.slo.spec import SpecError, Validation, builtin_specs_path, load_policy, load_slos, validate_file

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
