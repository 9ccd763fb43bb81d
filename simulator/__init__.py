"""Stim-powered fleet simulator (issue 3). Emits telemetry through ``collector``'s bulk and exporter APIs."""

__all__: list[str] = []
