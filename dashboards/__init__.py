"""The Streamlit exec, on-call and debug views (``qfleet dashboards``).

:mod:`qfleet.dashboards.data` reads the store into DataFrames (no Streamlit import); it reads every package's tables
with SQLAlchemy Core and writes nothing itself: acknowledging an incident or adding a silence goes through the
alerts package's repositories. :mod:`qfleet.dashboards.ui` holds the shared widgets, and ``views/`` the thin pages
that ``app.py`` routes to.
"""

__all__: list[str] = []
