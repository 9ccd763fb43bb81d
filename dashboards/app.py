"""The qfleet dashboards: an ``st.navigation`` router over the exec, on-call and debug pages.

Run with ``qfleet dashboards`` (or ``streamlit run dashboards/app.py -- --db URL``); the store comes from
``--db`` or ``$QFLEET_DATABASE_URL``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

__all__: list[str] = []

# Not pages/: a pages/ folder of scripts beside the entrypoint makes Streamlit run its v1 multipage mode.
PAGES = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="qfleet", layout="wide")
exec_page = st.Page(PAGES / "exec.py", title="Fleet overview", icon=":material/monitoring:", url_path="exec")


def _home() -> None:
    # Streamlit serves the default page at "/" only, so a copied /exec link would find nothing if exec were the
    # default: "/" forwards to /exec instead (keeping its query parameters).
    st.switch_page(exec_page, query_params=st.query_params.to_dict())


nav = st.navigation({
    "Leadership": [st.Page(_home, title="Home", url_path="home", default=True, visibility="hidden"), exec_page],
    "Operations": [st.Page(PAGES / "oncall.py", title="On-call", icon=":material/notifications_active:",
                           url_path="oncall")],
    "Engineering": [st.Page(PAGES / "debug.py", title="Debug a job", icon=":material/bug_report:",
                            url_path="debug")],
})
nav.run()
