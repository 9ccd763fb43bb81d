"""SLIs, error budgets and multiwindow multi-burn-rate alerting over the store (issue 4)."""

__all__: list[str] = []
