"""Telemetry-controlled text in the alerts package's outputs is shown as text, and bad CLI values are one-line errors.

Issue 12, medium: terminal escape sequences in labels reach the terminal via the incidents list; a newline in a
label crashes the HTML postmortem (``KeyError``); labels and titles are rendered as Markdown/HTML markup. Low:
``qfleet alerts silence add --duration 99999999999999999w`` ends in a traceback.

Oracles: the raw bytes printed (no ESC, one line per incident), :mod:`html.parser` for the HTML export (no element
comes from a label; its text reads back as the label), and CommonMark's escaping rule for the Markdown export (every
ASCII punctuation character from a label is backslash-escaped, so none can open a link, image or tag).
"""

from __future__ import annotations

import io
import json
import os
import string
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qfleet.alerts.cli import main
from qfleet.alerts.incidents import Incidents
from qfleet.alerts.model import Alert, Notification, labels_key
from qfleet.alerts.postmortem import build_postmortem, render
from qfleet.text import for_terminal
from tests.conftest import FakeClock

ESC = "\x1b"
# A node name an attacker with the ingest token can choose: a terminal clear, a fake line, a Markdown image and
# link, an HTML script, format braces, a table pipe, emphasis and a code span.
EVIL = ("qpu-x\x1b[2J\n![t](http://evil.example/p.png)\nFAKE LINE [click](http://evil.example) <script>alert(1)"
        "</script> {title} {0} | *em* `code` &amp; \\")
TITLE = f"Node {EVIL} is down"
SAMPLE = str(Path(__file__).resolve().parents[2] / "alerts" / "alerting.yaml")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), environ={}, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def _open_incident(engine: Engine) -> str:
    alert = Alert(labels=labels_key({"alertname": "NodeDown", "severity": "page", "node": EVIL}),
                  annotations=(("summary", TITLE),), starts_at=0)
    n = Notification(at=30, receiver="oncall", group_key='{}:{alertname="NodeDown"}',
                     group_labels=(("alertname", "NodeDown"), ("node", EVIL)), reason="first notification",
                     firing=(alert,), resolved=())
    return Incidents(engine, clock=FakeClock()).on_notification(n, 30)


# -- terminal -------------------------------------------------------------------------------------------------


def test_incidents_list_prints_no_escape_byte_and_one_line_per_incident(sqlite_engine: Engine) -> None:
    _open_incident(sqlite_engine)
    code, out, err = _run("incidents", "--db", str(sqlite_engine.url))
    assert code == 0, err
    assert ESC not in out and out.count("\n") == 1 and "FAKE LINE" in out
    assert for_terminal(TITLE) in out   # shown, with the controls made visible


def test_silence_list_prints_no_escape_byte(sqlite_engine: Engine) -> None:
    db = str(sqlite_engine.url)
    code, _, err = _run("silence", "add", f'node="{EVIL.replace(chr(92), chr(92) * 2)}"', "--author",
                        "ana\x1b]0;owned\x07", "--comment", "line\nFAKE", "--db", db)
    assert code == 0, err
    code, out, _ = _run("silence", "list", "--db", db)
    assert code == 0 and ESC not in out and "\x07" not in out and out.count("\n") == 1


def test_replay_lines_print_no_escape_byte(tmp_path: Path) -> None:
    events = tmp_path / "t.json"
    events.write_text(json.dumps([{"t": "0s", "labels": {"alertname": f"A{EVIL}", "severity": "page"},
                                   "state": "firing"}]))
    code, out, err = _run("replay", "--config", SAMPLE, "--events", str(events), "--until", "1h")
    assert code == 0, err
    lines = out.splitlines()
    assert lines and ESC not in out and not any(line.startswith("FAKE") for line in lines)


def test_error_messages_print_no_escape_byte(sqlite_engine: Engine) -> None:
    code, _, err = _run("ack", f"id{ESC}[2J\nFAKE", "--by", "me", "--db", str(sqlite_engine.url))
    assert code == 2 and ESC not in err and err.count("\n") == 1


# -- bad values: one line, exit 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", ["99999999999999999w", "290y", "9" * 400 + "s", "-1h", "1e9h", ""])
def test_silence_add_refuses_huge_or_invalid_durations_in_one_line(sqlite_engine: Engine, duration: str) -> None:
    db = str(sqlite_engine.url)
    code, out, err = _run("silence", "add", 'node="a"', f"--duration={duration}", "--author", "a", "--comment", "c",
                          "--db", db)
    assert code == 2 and out == "" and "--duration" in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert _run("silence", "list", "--db", db)[1] == ""   # nothing written


def test_replay_refuses_a_horizon_it_could_not_finish(tmp_path: Path) -> None:
    events = tmp_path / "t.json"
    events.write_text(json.dumps([{"t": "0s", "labels": {"alertname": "A"}, "state": "firing"}]))
    code, _, err = _run("replay", "--config", SAMPLE, "--events", str(events), "--until", "99y")
    assert code == 2 and "--until" in err and len(err.strip().splitlines()) == 1


def test_replay_into_a_closed_pipe_ends_without_a_traceback(tmp_path: Path) -> None:
    """`qfleet alerts replay … | head`: the reader is gone before anything is written (deterministic EPIPE)."""
    events = tmp_path / "t.json"
    events.write_text(json.dumps([{"t": f"{i}s", "labels": {"alertname": f"A{i}"}, "state": "firing"}
                                  for i in range(50)]))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "qfleet.cli", "alerts", "replay", "--config", SAMPLE,
                               "--events", str(events), "--until", "1h"], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 1


# -- postmortem exports ----------------------------------------------------------------------------------------


class _Elements(HTMLParser):
    """Every start tag, and the text inside each h1/title/td/li."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("h1", "title", "td", "li", "strong"):
            self._open.append(tag)
            self.text.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for tag in self._open:
            self.text[tag][-1] += data


def test_html_postmortem_renders_labels_as_text(sqlite_engine: Engine) -> None:
    iid = _open_incident(sqlite_engine)
    page = render(build_postmortem(sqlite_engine, iid), "html")   # raised KeyError: 't' before the fix
    parsed = _Elements()
    parsed.feed(page)
    parsed.close()
    # Only the export's own elements: none from the label (no script, a, or a second img).
    assert set(parsed.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "ul", "li",
                                "table", "thead", "tbody", "tr", "th", "td", "strong", "img"}, set(parsed.tags)
    assert parsed.tags.count("img") == len(build_postmortem(sqlite_engine, iid).charts)
    assert parsed.text["title"] == [TITLE] and parsed.text["h1"] == [f"Postmortem: {for_terminal(TITLE)}"]
    assert any("![t](http://evil.example/p.png)\\nFAKE LINE [click](http://evil.example)" in cell
               for cell in parsed.text["td"]), "the fired event's labels are shown, as text"
    assert any(for_terminal(EVIL) in item for item in parsed.text["li"]), "the impacted node is shown"


_PUNCT = set(string.punctuation)


def _commonmark_literal(text: str) -> str:
    """``text`` read back under CommonMark's backslash-escape rule, refusing any ASCII punctuation that is not
    escaped (it could start a link, image, tag, emphasis or code span)."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in _PUNCT:
            out.append(text[i + 1])
            i += 2
            continue
        assert c not in _PUNCT, f"unescaped {c!r} at {i} in {text!r}"
        out.append(c)
        i += 1
    return "".join(out)


def test_markdown_postmortem_escapes_every_label(sqlite_engine: Engine) -> None:
    iid = _open_incident(sqlite_engine)
    md = render(build_postmortem(sqlite_engine, iid), "md")
    lines = md.splitlines()
    assert not any(line.startswith("FAKE") for line in lines), "a newline in a label started a line"
    [title] = [line for line in lines if line.startswith("# ")]
    assert title.startswith("# Postmortem: ")
    assert _commonmark_literal(title.removeprefix("# Postmortem: ")) == for_terminal(TITLE)
    [nodes] = [line for line in lines if line.startswith("- Nodes: ")]
    node_text = nodes.removeprefix("- Nodes: ").removesuffix("; links: -")
    assert _commonmark_literal(node_text) == for_terminal(EVIL)
    assert "![" not in md.replace("\\!\\[", "")   # no image outside the (here absent) charts
