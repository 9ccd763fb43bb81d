"""qfleet: observability and SRE for fleets of networked quantum processors.

The product's packages install beneath this name: ``qfleet.simulator``, ``qfleet.collector``, ``qfleet.slo``,
``qfleet.alerts``, ``qfleet.dashboards``, ``qfleet.runbooks`` and ``qfleet.migrations``. Directly in this package:

* the foundation every package may import: :mod:`qfleet.units` (time units, durations, timestamps) and
  :mod:`qfleet.problems` (the validation vocabulary of every loaded file);
* the composition root that nothing imports: :mod:`qfleet.cli` (the ``qfleet`` command), :mod:`qfleet.demo`
  and :mod:`qfleet.serve`.

Importing ``qfleet`` imports only :mod:`qfleet.native`, which decides whether the modules compiled by setup.py
(mypyc) run compiled or from their sources (:func:`qfleet.native.install`).
"""

from qfleet import native as _native

__all__: list[str] = []
#: How the compiled modules load: ``compiled``, ``not built``, ``QFLEET_INTERPRETED=1`` or ``stale: <module>``.
NATIVE = _native.install()
