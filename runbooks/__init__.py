"""Runbooks per failure mode, game-day scenarios and their scorecards (``qfleet gameday``), and the command line
of incidents and postmortem exports (``qfleet incidents``, ``qfleet postmortem``).

The Markdown runbooks and scenario files ship as package data, so alerts can link to them
from an installed wheel.
"""

__all__: list[str] = []
