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
nav = st.navigation({
    "Leadership": [st.Page(PAGES / "exec.py", title="Fleet overview", icon=":material/monitoring:",
                           url_path="exec", default=True)],
    "Operations": [st.Page(PAGES / "oncall.py", title="On-call", icon=":material/notifications_active:",
                           url_path="oncall")],
    "Engineering": [st.Page(PAGES / "debug.py", title="Debug a job", icon=":material/bug_report:",
                            url_path="debug")],
})
nav.run()
