"""The dashboards' pages under hostile input (Streamlit AppTest, in process): telemetry text shown as text,
hand-edited links, a missing or unmigrated store, and who an action is recorded as under each auth mode.

Issue 12: injected links and tracking images in incident titles and labels loaded; a newline in a label crashed
the on-call page; ``?end=9999-12-31T23:59:59Z`` and out-of-range ``start``/``end`` crashed with a traceback; a
missing SQLite file was created and showed ``no such table``; Acknowledge/Resolve/Silence recorded a typed name.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from streamlit.testing.v1 import AppTest

from qfleet.alerts.schema import Incident, SilenceRecord
from qfleet.collector import Store
from qfleet.collector.migrate import downgrade, upgrade
from qfleet.collector.settings import ENV_DATABASE_URL
from qfleet.collector.store import open_engine
from qfleet.dashboards import auth, ui
from qfleet.simulator.engine import RunConfig, Simulation
from qfleet.simulator.fault_files import builtin_faults_path, load_faults
from qfleet.simulator.fleet import builtin_fleet_path, load_fleet
from qfleet.simulator.sinks import StoreSink
from qfleet.units import NS

VIEWS = Path(__file__).resolve().parents[2] / "dashboards" / "views"
TIMEOUT = 60
EVIL_TITLE = "[x](http://evil) ![t](http://evil/p.png)"
EVIL_LABELS = {"alertname": "QfleetNodeHeartbeatMissing\nsecond line", "node": "[n](http://evil)",
               "link": "<img src=http://evil/p.png>", "severity": "page", "runbook_url": "![t](http://evil/p.png)",
               "hardware_type": "trapped-ion\r\nx"}


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite store: 20 simulated minutes of the mesh fleet and one hostile incident (raw rows)."""
    path = tmp_path_factory.mktemp("dash-pages") / "store.db"
    url = f"sqlite:///{path}"
    engine = open_engine(url)
    try:
        upgrade(engine)
        fleet = load_fleet(builtin_fleet_path("mesh"))
        sim = Simulation(fleet, load_faults(builtin_faults_path("example"), fleet),
                         RunConfig(duration_ns=20 * 60 * NS, seed=3))
        sink = StoreSink(Store(engine), {"service.name": "qfleet-simulator", "qfleet.run.id": sim.run_id})
        for step in sim.steps():
            sink.write(step)
        sink.close()
        with engine.begin() as c:
            c.execute(insert(Incident.__table__).values(
                id="evil1", group_key="{}:{}", receiver="`pages` [r](http://evil)", title=EVIL_TITLE,
                severity="page", labels=EVIL_LABELS, state="open", opened_unix_nano=sim.config.start_ns + NS,
                acknowledged_unix_nano=None, acknowledged_by=None, escalated_unix_nano=None,
                resolved_unix_nano=None))
    finally:
        engine.dispose()
    return url


@pytest.fixture
def writable(store_url: str, tmp_path: Path) -> str:
    """A private copy of the module's store (for tests that write)."""
    eng = open_engine(store_url)
    with eng.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    dst = tmp_path / "copy.db"
    dst.write_bytes(Path(store_url.removeprefix("sqlite:///")).read_bytes())
    return f"sqlite:///{dst}"


@pytest.fixture
def engine_of() -> Iterator[Any]:
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engines.append(open_engine(url))
        return engines[-1]

    yield make
    for e in engines:
        e.dispose()


def _app(page: str, url: str, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    monkeypatch.setenv(ENV_DATABASE_URL, url)
    at = AppTest.from_file(str(VIEWS / f"{page}.py"), default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _markdown_texts(at: AppTest) -> list[str]:
    """Every string the page hands to Streamlit's Markdown renderer (metric labels and values included)."""
    out: list[str] = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "info", "warning", "error", "success"):
        out.extend(str(e.value) for e in at.get(kind))
    for m in at.metric:
        out.extend((str(m.label), str(m.value)))
    return out


# CommonMark: a backslash before ASCII punctuation makes it literal. What is left after removing those pairs is
# what the renderer may treat as markup.
_ESCAPED = re.compile(r"""\\[!-/:-@\[-`{-~]""")


def _live_markup(s: str) -> list[str]:
    bare = _ESCAPED.sub("_", s)
    return [t for t in ("](", "![", "<img", "<a ", "http://evil") if t in bare]


# -- telemetry text as text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["oncall", "exec"])
def test_injected_links_and_images_render_as_text(page: str, store_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(page, store_url, monkeypatch, incident="evil1")
    _ok(at)  # a newline (and a CR) in a label no longer crashes the page
    texts = _markdown_texts(at)
    assert any("evil" in t for t in texts) or page == "exec"  # the on-call page does show the hostile title
    bad = {t: _live_markup(t) for t in texts if _live_markup(t)}
    assert not bad, bad


def test_oncall_title_is_shown_verbatim(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("oncall", store_url, monkeypatch, incident="evil1")
    _ok(at)
    # Unescaping the Markdown gives back the exact title: nothing lost, nothing interpreted.
    assert _ESCAPED.sub(lambda m: m.group()[1], at.subheader[0].value) == EVIL_TITLE


def test_default_silence_matchers_survive_a_newline_label(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("oncall", store_url, monkeypatch, incident="evil1")
    _ok(at)
    default = at.text_area(key="oncall_silence_matchers").value
    lines = default.splitlines()
    # One matcher per line: the newline is escaped in the alertname matcher, the CR/LF label is left out.
    assert 'alertname="QfleetNodeHeartbeatMissing\\nsecond line"' in lines
    assert not any(line.startswith("hardware_type=") for line in lines)
    from qfleet.alerts.matchers import parse_matcher

    parsed = parse_matcher(lines[0])
    assert parsed.value == "QfleetNodeHeartbeatMissing\nsecond line"


# -- hand-edited links ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["exec", "oncall", "debug"])
@pytest.mark.parametrize("params", [
    {"end": "9999-12-31T23:59:59Z"},
    {"start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59Z"},
    {"start": "-99999999999999999999999"},
    {"start": "99999999999999999999999", "end": "1"},
    {"start": "²", "end": "1e400"},
])
def test_out_of_range_window_params_are_clamped(page: str, params: dict[str, str], store_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(page, store_url, monkeypatch, **params)
    _ok(at)
    start, end = ui.time_from_param(at.query_params["start"]), ui.time_from_param(at.query_params["end"])
    eng = open_engine(store_url)
    try:
        with eng.connect() as c:
            lo, hi = c.execute(text("SELECT min(start_time_unix_nano), max(start_time_unix_nano) FROM spans")).one()
    finally:
        eng.dispose()
    # The window written back lies within the data's span (to the minute).
    assert start is not None and end is not None
    assert lo - 60 * NS <= start < end <= hi + 2 * 60 * NS


# -- the store ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["exec", "oncall", "debug"])
def test_missing_sqlite_file_is_not_created_and_is_named(page: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.db"
    at = _app(page, f"sqlite:///{missing}", monkeypatch)
    _ok(at)
    assert not missing.exists()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "nope" in errors[0] and "does not exist" in errors[0], errors


def test_unmigrated_database_names_the_upgrade_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    eng = open_engine(url)
    try:
        upgrade(eng)
        downgrade(eng, "base")  # a real database file, with no qfleet tables
    finally:
        eng.dispose()
    at = _app("oncall", url, monkeypatch)
    _ok(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "qfleet db upgrade" in errors[0].replace("\\", ""), errors


# -- who clicked ------------------------------------------------------------------------------------------------


def test_no_free_text_name_and_none_mode_records_the_local_account(writable: str, engine_of: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.ENV_AUTH, raising=False)
    at = _app("oncall", writable, monkeypatch, incident="evil1")
    _ok(at)
    assert not [t for t in at.text_input if "name" in str(t.label).lower()]
    at.button(key="oncall_ack").click().run()
    _ok(at)
    with engine_of(writable).connect() as c:
        by = c.execute(select(Incident.__table__.c.acknowledged_by).where(Incident.__table__.c.id == "evil1")).scalar()
    assert by == f"local:{getpass.getuser()}"


def _users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    auth.add_user(path, "alice", "correct horse battery staple")
    return path


def test_users_mode_requires_sign_in_and_records_the_user(writable: str, tmp_path: Path, engine_of: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.ENV_AUTH, "users")
    monkeypatch.setenv(auth.ENV_USERS_FILE, str(_users_file(tmp_path)))
    at = _app("oncall", writable, monkeypatch, incident="evil1")
    _ok(at)
    assert "Sign in" in [t.value for t in at.title]
    assert "oncall_ack" not in [b.key for b in at.button] and not at.dataframe  # nothing shown signed out
    # A wrong password: still signed out.
    at.text_input(key="auth_name").input("alice")
    at.text_input(key="auth_password").input("wrong")
    at.button(key="auth_submit").click().run()
    _ok(at)
    assert any("Wrong user name or password" in e.value for e in at.error)
    assert "oncall_ack" not in [b.key for b in at.button]
    # The right one: the page, and the acknowledgement and the silence name alice.
    at.text_input(key="auth_name").input("alice")
    at.text_input(key="auth_password").input("correct horse battery staple")
    at.button(key="auth_submit").click().run()
    _ok(at)
    at.button(key="oncall_ack").click().run()
    _ok(at)
    at.text_area(key="oncall_silence_matchers").input('alertname="X"')
    at.button(key="oncall_silence_submit").click().run()
    _ok(at)
    with engine_of(writable).connect() as c:
        acked = c.execute(select(Incident.__table__.c.acknowledged_by)
                          .where(Incident.__table__.c.id == "evil1")).scalar()
        created = [r for (r,) in c.execute(select(SilenceRecord.__table__.c.created_by))]
    assert acked == "alice" and created == ["alice"]


def test_users_mode_refuses_a_shared_users_file(writable: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _users_file(tmp_path)
    path.chmod(0o644)
    monkeypatch.setenv(auth.ENV_AUTH, "users")
    monkeypatch.setenv(auth.ENV_USERS_FILE, str(path))
    at = _app("oncall", writable, monkeypatch, incident="evil1")
    at.text_input(key="auth_name").input("alice")
    at.text_input(key="auth_password").input("correct horse battery staple")
    at.button(key="auth_submit").click().run()
    _ok(at)
    assert any("chmod 600" in e.value.replace("\\", "") for e in at.error)
    assert "oncall_ack" not in [b.key for b in at.button]


def test_proxy_mode_records_the_header_user(writable: str, engine_of: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.ENV_AUTH, "proxy")
    monkeypatch.setenv(auth.ENV_PROXY_HEADER, "X-Forwarded-User")
    # AppTest has no HTTP request: the headers seam stands in for what the reverse proxy sent.
    monkeypatch.setattr(ui, "_request_headers", lambda: {"X-Forwarded-User": "bob@example.org"})
    at = _app("oncall", writable, monkeypatch, incident="evil1")
    _ok(at)
    at.button(key="oncall_resolve").click().run()
    _ok(at)
    with engine_of(writable).connect() as c:
        state, = c.execute(select(Incident.__table__.c.state).where(Incident.__table__.c.id == "evil1")).one()
        by = [d for (d,) in c.execute(text("SELECT detail FROM incident_events WHERE incident_id = 'evil1' "
                                           "AND kind = 'resolved'"))]
    assert state == "resolved" and "bob@example.org" in str(by)


def test_proxy_mode_without_the_header_shows_nothing(writable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.ENV_AUTH, "proxy")
    monkeypatch.setenv(auth.ENV_PROXY_HEADER, "X-Forwarded-User")
    monkeypatch.setattr(ui, "_request_headers", lambda: {"X-Other": "mallory"})
    at = _app("oncall", writable, monkeypatch, incident="evil1")
    _ok(at)
    assert any("X-Forwarded-User" in e.value for e in at.error)
    assert "oncall_ack" not in [b.key for b in at.button] and not at.dataframe


def test_slo_table_html_shows_hostile_segments_as_text() -> None:
    """The exec page's SLO table is HTML (st.html): SLO names, segments and policy steps are escaped text."""
    from html.parser import HTMLParser

    import pandas as pd

    hostile = '<img src=http://evil/p.png onerror="alert(1)">'
    rows = pd.DataFrame([{"slo": "job-success<script>", "segment": f"hardware_type={hostile}", "objective": 0.99,
                          "sli": 0.5, "remaining_fraction": -2.0, "burn_1h": 3.0, "burn_6h": 2.0, "page": True,
                          "ticket": True, "state": "exhausted", "steps_triggered": ["<b>freeze</b>"],
                          "at": 10**18, "period_start": None, "period_end": None}])
    html = ui.slo_table_html(rows)

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: set[str] = set()
            self.text = ""

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.add(tag)

        def handle_data(self, data: str) -> None:
            self.text += data

    parsed = Tags()
    parsed.feed(html)
    assert parsed.tags <= {"div", "p", "span", "table", "thead", "tbody", "tr", "th", "td"}, parsed.tags
    assert hostile in parsed.text and "job-success<script>" in parsed.text and "<b>freeze</b>" in parsed.text
