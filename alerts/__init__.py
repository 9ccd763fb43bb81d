"""Alertmanager-compatible routing, silences and signed webhook delivery (issue 5)."""

__all__: list[str] = []
