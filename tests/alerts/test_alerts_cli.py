"""`qfleet alerts …` as a user runs it: routing previews, replays, silences, acknowledgements, bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

from qfleet.alerts.cli import main

SAMPLE = str(Path(__file__).resolve().parents[2] / "alerts" / "alerting.yaml")


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), environ={}, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_routes_test_prints_the_receivers() -> None:
    code, page, _ = _run("routes", "test", "--config", SAMPLE, "severity=page", "team=hardware")
    assert code == 0 and page.strip()
    code, sec, _ = _run("routes", "test", "--config", SAMPLE, "severity=security", "team=security")
    code2, ticket, _ = _run("routes", "test", "--config", SAMPLE, "severity=ticket")
    assert code == code2 == 0 and len({page.strip(), sec.strip(), ticket.strip()}) == 3  # three receivers


def test_replay_prints_each_notification(tmp_path: Path) -> None:
    events = tmp_path / "t.json"
    events.write_text(json.dumps([
        {"t": "0s", "labels": {"alertname": "A", "severity": "page", "team": "hardware"}, "state": "firing"},
        {"t": "400s", "labels": {"alertname": "A", "severity": "page", "team": "hardware"}, "state": "resolved"}]))
    code, out, err = _run("replay", "--config", SAMPLE, "--events", str(events), "--json", "--until", "1h")
    assert code == 0, err
    notes = json.loads(out)
    assert notes[0]["reason"] == "first notification" and notes[0]["firing"][0]["alertname"] == "A"
    assert notes[-1]["reason"] == "all alerts resolved" and notes[-1]["firing"] == []
    code, _, err = _run("replay", "--config", SAMPLE, "--events", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
    # --until uses the one duration grammar: 1h30m works, 5m5m is refused naming the value.
    code, out, err = _run("replay", "--config", SAMPLE, "--events", str(events), "--json", "--until", "1h30m")
    assert code == 0 and json.loads(out) == notes, err
    code, _, err = _run("replay", "--config", SAMPLE, "--events", str(events), "--until", "5m5m")
    assert code == 2 and "--until" in err and "'5m5m'" in err and len(err.strip().splitlines()) == 1


def test_silences_and_incidents_in_the_store(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    code, sid, err = _run("silence", "add", 'node="qpu-a"', 'slo=~"fid.*"', "--author", "oncall",
                          "--comment", "recalibration", "--duration", "2h", "--db", db)
    assert code == 0, err
    code, listing, _ = _run("silence", "list", "--db", db)
    assert sid.strip() in listing and "active" in listing and 'node="qpu-a"' in listing
    assert _run("silence", "expire", sid.strip(), "--db", db)[0] == 0
    assert "expired" in _run("silence", "list", "--db", db)[1]
    code, _, err = _run("silence", "expire", sid.strip(), "--db", db)
    assert code == 2 and "no active silence" in err
    code, _, err = _run("silence", "add", 'node=~"("', "--author", "a", "--comment", "c", "--db", db)
    assert code == 2 and "node" in err and "regex" in err
    # Refused before anything is written, every problem named with its fix.
    code, _, err = _run("silence", "add", "node: qpu-a", "--author", " ", "--comment", " ", "--duration", "1h30m",
                        "--db", db)
    assert code == 2 and "matchers[0]" in err and "comment" in err and err.count("fix:") == 2
    code, _, err = _run("silence", "add", 'node="a"', "--author", "a", "--comment", "c", "--duration", "5m5m",
                        "--db", db)
    assert code == 2 and "--duration" in err and "'5m5m'" in err
    assert _run("silence", "list", "--db", db)[1].count("\n") == 1   # still the one expired silence
    code, sid2, _ = _run("silence", "add", 'slo!="x"', 'node="b"', "--author", "a", "--comment", "c", "--db", db)
    # createdBy is who ran the command (the OS account: the identity the command line authenticates), with the
    # name given beside it.
    import getpass

    who = f"local:{getpass.getuser()} as a"
    listing = _run("silence", "list", "--db", db)[1]
    assert code == 0 and f'{sid2.strip()}  active    {who}: c  slo!="x" node="b"' in listing
    code, out, _ = _run("incidents", "--db", db, "--json")
    assert code == 0 and json.loads(out) == []
    code, _, err = _run("ack", "nope", "--by", "me", "--db", db)
    assert code == 2 and "nope" in err
