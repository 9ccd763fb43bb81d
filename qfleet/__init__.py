"""qfleet: the composition root (CLI dispatch, demo). Nothing imports it."""

__all__: list[str] = []
