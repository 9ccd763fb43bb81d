"""AppTests of the exec, on-call and debug pages on the seeded store (and on an empty one), plus the CLI."""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from qfleet.alerts.postmortem import build_postmortem
from qfleet.collector.migrate import upgrade
from qfleet.collector.settings import ENV_DATABASE_URL
from qfleet.collector.store import open_engine
from qfleet.dashboards import cli, data, ui
from qfleet.text import markdown_literal
from tests.dashboards.browser import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "dashboards" / "views"
TIMEOUT = 60


def _app(name: str, url: str, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    monkeypatch.setenv(ENV_DATABASE_URL, url)
    at = AppTest.from_file(str(PAGES / f"{name}.py") if name != "app" else str(ROOT / "dashboards" / "app.py"),
                           default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _infos(at: AppTest) -> list[str]:
    return [i.value for i in at.info]


@pytest.fixture
def writable_url(seeded_db_url: str, tmp_path: Path) -> str:
    """A private copy of the seeded store, for tests that write."""
    src = Path(seeded_db_url.removeprefix("sqlite:///"))
    dst = tmp_path / "copy.db"
    eng = open_engine(seeded_db_url)
    with eng.connect() as c:  # fold the WAL into the main file before copying it
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    shutil.copy(src, dst)
    return f"sqlite:///{dst}"


@pytest.fixture
def empty_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    eng = open_engine(url)
    upgrade(eng)
    eng.dispose()
    return url


@pytest.fixture
def engine(seeded_db_url: str) -> Any:
    eng = open_engine(seeded_db_url)
    yield eng
    eng.dispose()


def _qp(at: AppTest, name: str) -> str:
    v = at.query_params[name]
    return v[0] if isinstance(v, list) else v


def _shown_filters(at: AppTest, **kw: str | None) -> data.Filters:
    """The window the page used, read back from the query params it wrote."""
    start, end = ui.time_from_param(_qp(at, "start")), ui.time_from_param(_qp(at, "end"))
    assert start is not None and end is not None
    return data.Filters(start_ns=start, end_ns=end, **kw)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.2f}%"


# -- exec ---------------------------------------------------------------------------------------------------------


def test_exec_shows_the_data_modules_kpis(seeded_db_url: str, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("exec", seeded_db_url, monkeypatch)
    _ok(at)
    assert at.title[0].value == "Fleet overview"
    f = _shown_filters(at)
    default = data.default_filters(engine, hours=24)  # the window defaults to the data's own span (minutes)
    assert abs(f.start_ns - default.start_ns) <= 60 * 10**9 and abs(f.end_ns - default.end_ns) <= 60 * 10**9
    k = data.fleet_kpis(engine, f)
    m = _metrics(at)
    assert m["Availability"] == _pct(k["availability"])
    assert m["Utilisation"] == _pct(k["utilisation"])
    assert m["Job success"] == _pct(k["job_success_rate"])
    assert m["Entanglement success"] == _pct(k["entanglement_success_rate"])
    assert m["Open incidents"] == f"{k['open_incidents'] or 0:,}"
    assert k["jobs"] and k["job_success_rate"] is not None
    # Two trend charts, the SLO table and the incident table are drawn.
    assert len(at.get("vega_lite_chart")) == 2
    assert len(at.dataframe) == 2
    slo = at.dataframe[0].value
    assert len(slo) == len(data.slo_status(engine, f.end_ns)) > 0


def test_exec_hardware_filter_from_the_query_params(seeded_db_url: str, seeded_facts: dict[str, Any], engine: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    hw = seeded_facts["hardware_types"][0]
    at = _app("exec", seeded_db_url, monkeypatch, hardware_type=hw)
    _ok(at)
    assert at.selectbox(key="filter_hardware_type").value == hw
    k = data.fleet_kpis(engine, _shown_filters(at, hardware_type=hw))
    assert _metrics(at)["Job success"] == _pct(k["job_success_rate"])
    # Clearing the filter through the widget writes the query params back.
    at.selectbox(key="filter_hardware_type").select(ui.ALL).run()
    _ok(at)
    assert "hardware_type" not in at.query_params


def test_pages_on_an_empty_store_say_why(empty_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("exec", "oncall", "debug"):
        at = _app(name, empty_url, monkeypatch)
        _ok(at)
        assert any("No telemetry in the store yet" in i for i in _infos(at)), (name, _infos(at))
    assert any("No incidents in the store" in i for i in _infos(_app("oncall", empty_url, monkeypatch)))


def test_unknown_query_param_values_fall_back_to_all(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("exec", seeded_db_url, monkeypatch, node="no-such-node")
    _ok(at)
    assert at.selectbox(key="filter_node").value == ui.ALL
    assert "node" not in at.query_params


def test_exec_filter_matching_nothing_shows_empty_states(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A trapped-ion link under the superconducting filter: no spans match, the entanglement trend says why it is empty.
    at = _app("exec", seeded_db_url, monkeypatch, hardware_type="superconducting", link="ion-a~ion-b")
    _ok(at)
    infos = _infos(at)
    assert any(i.startswith("No entanglement requests in this window") for i in infos), infos
    assert len(at.get("vega_lite_chart")) == 1  # only the job trend (job spans carry no link) is drawn


def test_app_router_renders_the_default_page(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("app", seeded_db_url, monkeypatch)
    _ok(at)
    assert at.title[0].value == "Fleet overview"


# -- on-call ------------------------------------------------------------------------------------------------------


def test_oncall_selects_the_incident_of_the_query_param(seeded_db_url: str, seeded_facts: dict[str, Any],
                                                        engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    iid = seeded_facts["incident_id"]
    assert iid, "the seeded store should hold incidents"
    at = _app("oncall", seeded_db_url, monkeypatch, incident=iid)
    _ok(at)
    assert at.selectbox(key="oncall_incident").value == iid
    inc = data.incidents(engine, limit=500).set_index("id").loc[iid]
    assert at.subheader[0].value == markdown_literal(inc["title"])  # telemetry text, shown as text
    # The impact shown is the postmortem's (one definition, alerts.impact).
    impact = build_postmortem(engine, iid).doc["impact"]
    m = _metrics(at)
    assert {k: m[f"Impacted {k}"] for k in ("nodes", "links", "tenants", "jobs")} == {
        "nodes": str(len(impact["nodes"])), "links": str(len(impact["links"])),
        "tenants": str(len(impact["tenants"])), "jobs": str(impact["jobs_failed"])}
    assert any(markdown_literal(impact["window"]["from"]) in c.value for c in at.caption)
    timeline = [d.value for d in at.dataframe if list(d.value.columns) == ["at", "kind", "detail"]]
    assert len(timeline) == 1 and len(timeline[0]) == len(data.incident_timeline(engine, iid)) > 0
    assert _qp(at, "incident") == iid
    # The postmortem of the selected incident is offered for download (alerts.postmortem).
    assert len(at.get("download_button")) == 2


def test_oncall_acknowledge_writes_to_the_store(writable_url: str, seeded_facts: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    eng = open_engine(writable_url)
    try:
        with eng.connect() as c:
            iid = c.execute(text("SELECT id FROM incidents WHERE state = 'open' ORDER BY opened_unix_nano")).scalar()
        if iid is None:  # every seeded incident resolved itself: reopen one in the private copy
            iid = seeded_facts["incident_id"]
            with eng.begin() as c:
                c.execute(text("UPDATE incidents SET state = 'open', resolved_unix_nano = NULL WHERE id = :i"),
                          {"i": iid})
        at = _app("oncall", writable_url, monkeypatch, incident=iid)
        _ok(at)
        at.button(key="oncall_ack").click().run()
        _ok(at)
        with eng.connect() as c:
            state, by = c.execute(text("SELECT state, acknowledged_by FROM incidents WHERE id = :i"), {"i": iid}).one()
            kinds = [k for (k,) in c.execute(text("SELECT kind FROM incident_events WHERE incident_id = :i"),
                                             {"i": iid})]
        # --auth none (the default, loopback only): the account running the dashboards, never a typed name.
        assert (state, by) == ("acknowledged", f"local:{getpass.getuser()}")
        assert "acknowledged" in kinds
        assert any("Acknowledged" in s.value for s in at.success)
        assert at.button(key="oncall_ack").disabled
    finally:
        eng.dispose()


def test_oncall_silence_form_writes_a_silence(writable_url: str, seeded_facts: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("oncall", writable_url, monkeypatch, incident=seeded_facts["incident_id"])
    _ok(at)
    at.text_area(key="oncall_silence_matchers").input('alertname="QfleetNodeHeartbeatMissing"')
    at.number_input(key="oncall_silence_hours").set_value(1.0)
    at.text_input(key="oncall_silence_comment").input("maintenance")
    at.button(key="oncall_silence_submit").click().run()
    _ok(at)
    eng = open_engine(writable_url)
    try:
        with eng.connect() as c:
            rows = c.execute(text("SELECT comment, ends_at_unix_nano - starts_at_unix_nano FROM silences")).all()
    finally:
        eng.dispose()
    assert [(r[0], r[1]) for r in rows] == [("maintenance", 3600 * 10**9)]


# -- debug --------------------------------------------------------------------------------------------------------


def test_debug_opens_the_trace_of_the_query_param(seeded_db_url: str, seeded_facts: dict[str, Any], engine: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tid = seeded_facts["failed_trace_id"]
    at = _app("debug", seeded_db_url, monkeypatch, trace=tid)
    _ok(at)
    assert at.selectbox(key="debug_trace").value == tid
    trace = data.job_trace(engine, trace_id=tid)
    m = _metrics(at)
    assert m["Spans"] == str(len(trace)) and len(trace) > 1
    root = trace[trace["name"] == "qfleet.job"].iloc[0]
    assert m["Outcome"] == markdown_literal(root["attributes"]["qfleet.outcome"])
    assert root["attributes"]["qfleet.outcome"] != "success"
    # waterfall, T2, T1, errors, fidelity, variance (each drawn or explained)
    charts = len(at.get("vega_lite_chart"))
    assert charts + len(at.info) >= 6


def test_debug_lists_failed_jobs_by_default(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("debug", seeded_db_url, monkeypatch)
    _ok(at)
    sb = at.selectbox(key="debug_trace")
    assert sb.value and _qp(at, "trace") == sb.value
    assert "success" not in sb.format_func(sb.value).rsplit("·", 1)[-1]


def test_debug_unknown_trace_says_so(seeded_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app("debug", seeded_db_url, monkeypatch, trace="0" * 32)
    _ok(at)
    assert any("is not in the store" in w.value for w in at.warning)


# -- plumbing -----------------------------------------------------------------------------------------------------


def test_database_url_prefers_the_flag_then_the_environment() -> None:
    assert ui.database_url(["--db", "sqlite:///a.db"], {ENV_DATABASE_URL: "sqlite:///b.db"}) == "sqlite:///a.db"
    assert ui.database_url(["--db=sqlite:///c.db"], {}) == "sqlite:///c.db"
    assert ui.database_url([], {ENV_DATABASE_URL: "sqlite:///b.db"}) == "sqlite:///b.db"
    assert ui.database_url([], {}) == "sqlite:///qfleet.db"


def test_cli_runs_streamlit_headless_on_loopback(empty_url: str) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []
    port = str(free_port())
    rc = cli.main(["--db", empty_url, "--port", port], environ={},
                  run=lambda cmd, env: calls.append((cmd, env)) or 0)
    assert rc == 0
    cmd, env = calls[0]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("dashboards/app.py")
    joined = " ".join(cmd)
    assert "--server.headless true" in joined and "--server.address 127.0.0.1" in joined
    assert f"--server.port {port}" in joined
    assert "--db" not in cmd and empty_url not in joined  # the URL goes through the environment only
    assert env[ENV_DATABASE_URL] == empty_url
    assert cli.main(["--db", "nonsense"], environ={}, run=lambda cmd, env: 0) == 2
