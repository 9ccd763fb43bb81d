"""qfleet: observability and SRE for fleets of networked quantum processors.

The product's packages install beneath this name: ``qfleet.simulator``, ``qfleet.collector``, ``qfleet.slo``,
``qfleet.alerts``, ``qfleet.dashboards``, ``qfleet.runbooks`` and ``qfleet.migrations``. Directly in this package:

* the foundation every package may import: :mod:`qfleet.units` (time units, durations, timestamps) and
  :mod:`qfleet.problems` (the validation vocabulary of every loaded file);
* the composition root that nothing imports: :mod:`qfleet.cli` (the ``qfleet`` command), :mod:`qfleet.demo`
  and :mod:`qfleet.serve`.

Importing ``qfleet`` imports nothing else.
"""

__all__: list[str] = []
