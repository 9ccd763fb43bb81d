"""Runbooks per failure mode, game-day scenarios and postmortem exports (issue 7).

The Markdown runbooks and scenario files ship as package data, so alerts can link to them
from an installed wheel.
"""

__all__: list[str] = []
