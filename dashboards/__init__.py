"""Streamlit exec, on-call and debug views (issue 6); read-only over the store."""

__all__: list[str] = []
