"""User regexes (route, inhibit and silence matchers, `qfleet alerts routes test`) run on RE2 as Alertmanager's do.

Issue 12, high 1: the silence ``principal=~"(a+)+$"`` and one label of 34 ``a`` and ``!`` froze ``qfleet serve``
(Python's backtracking ``re``). The freeze cases run in a child process with a generous timeout, so the old
engine fails them by timing out instead of hanging the test run. Which patterns are accepted, and what they
match, is judged by ``amtool`` (Alertmanager's own parser and Go's RE2-syntax ``regexp``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qfleet.alerts.config import ConfigError, load_config
from qfleet.alerts.routing import routes_test
from qfleet.alerts.silences import SilenceError, silence_from_api
from tests.conftest import require_tool

EVIL_VALUE = "a" * 34 + "!"
_TIMEOUT_S = 60   # RE2 answers in microseconds; Python's re needs about 2**34 steps for this input


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter; TimeoutExpired (a test failure) if it does not finish in time."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=_TIMEOUT_S, check=False)


def _config(path: Path, matcher: str) -> Path:
    """An alertmanager.yml whose one child route (receiver ``hit``) has ``matcher``; the root sends to ``miss``."""
    doc = {"route": {"receiver": "miss", "routes": [{"receiver": "hit", "matchers": [matcher]}]},
           "receivers": [{"name": "miss"}, {"name": "hit"}]}
    path.write_text(json.dumps(doc))   # JSON is YAML: both amtool and qfleet read the same bytes
    return path


def _quoted(pattern: str) -> str:
    """``pattern`` inside a matcher's double quotes (both parsers unescape ``\\\\`` and ``\\"``)."""
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


# -- the freeze -----------------------------------------------------------------------------------------------


def test_a_silence_with_a_catastrophic_pattern_answers_in_linear_time() -> None:
    done = _run_python(f"""
        from qfleet.alerts.silences import silence_from_api, silenced
        s = silence_from_api({{"matchers": [{{"name": "principal", "value": "(a+)+$", "isRegex": True}}],
                               "startsAt": 0, "endsAt": 10, "createdBy": "a", "comment": "c"}}, id="s")
        print(silenced([s], {{"principal": {EVIL_VALUE!r}}}, 5), silenced([s], {{"principal": "aaa"}}, 5))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_a_route_matcher_with_a_catastrophic_pattern_answers_in_linear_time(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "am.yml", 'principal=~"(a+)+$"')
    done = _run_python(f"""
        from pathlib import Path
        from qfleet.alerts.config import load_config
        from qfleet.alerts.routing import routes_test
        print(",".join(routes_test(load_config(Path({str(cfg)!r})), {{"principal": {EVIL_VALUE!r}}})))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "miss"


def test_routes_test_command_with_a_catastrophic_pattern_returns(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "am.yml", 'principal=~"(a+)+$"')
    done = subprocess.run([sys.executable, "-m", "qfleet.cli", "alerts", "routes", "test", "--config", str(cfg),
                           f"principal={EVIL_VALUE}"], capture_output=True, text=True, timeout=_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "miss"


def test_an_inhibit_rule_with_a_catastrophic_pattern_answers_in_linear_time() -> None:
    done = _run_python(f"""
        from qfleet.alerts.inhibit import inhibited
        from qfleet.alerts.matchers import parse_matchers
        from qfleet.alerts.model import Alert, InhibitRule, labels_key
        rule = InhibitRule(source_matchers=parse_matchers('alertname="Src"'),
                           target_matchers=parse_matchers('principal=~"(a+)+$"'))
        src = Alert(labels=labels_key({{"alertname": "Src"}}), starts_at=0)
        target = Alert(labels=labels_key({{"alertname": "T", "principal": {EVIL_VALUE!r}}}), starts_at=0)
        print(inhibited([rule], target, [src], 1))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- accepted or rejected: as amtool says ---------------------------------------------------------------------

PATTERNS = [
    # valid RE2 / Go
    r"qpu-.*", r"(a+)+$", r"(?P<n>a)", r"\z", r"\A", r"[[:alpha:]]+", r"[[:^alpha:]]", r"\pL", r"\p{Greek}",
    r"\PL", r"(?i)abc", r"(?s).", r"(?m)^a$", r"(?U)a+", r"\Qa.b\E", r"\Q(?<\C\E", r"a)|(b", r"\123", r"\x{10FFFF}",
    r"\b", r"a{,3}", r"x{1000}", r"[]a]", r"[^]a]", r"[(?<]", r"[a-b-c]", r"(?i-s:a)", r"\v", r"(|a)", r"|",
    r"[\d-z]", r"\.", r"\-", r"\<",
    # Python/PCRE only, or invalid everywhere
    r"(?=a)", r"(?!a)", r"(?<=a)b", r"(?<!a)b", r"(a)\1", r"(?P=n)", r"(?<n>a)", r"\Z", r"a*+", r"a++", r"a?+",
    r"(?>a)", r"(?#comment)", r"(?x)a b", r"\C", r"[]\C]", r"\G", r"\e", r"\cA", r"\8", r"\u0041", r"\N{DIGIT ONE}",
    r"\R", r"\h", r"\X", r"\k<n>", r"\g1", r"(?R)", r"a{1001}", r"a{2,1}", r"((a{100}){100}){100}", r"(",
    r"[", r"[z-a]", r"*", r"a**", r"\pX", r"[[:foo:]]", r"\x{110000}", r"[a-\d]", r"(?P<n>",
]


def _amtool_accepts(amtool: str, cfg: Path) -> bool:
    done = subprocess.run([amtool, "check-config", str(cfg)], capture_output=True, text=True, check=False)
    return done.returncode == 0


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_is_accepted_exactly_when_amtool_accepts_it(pattern: str, tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    cfg = _config(tmp_path / "am.yml", f'x=~"{_quoted(pattern)}"')
    expected = _amtool_accepts(amtool, cfg)
    try:
        load_config(cfg)
        accepted = True
    except ConfigError as e:
        accepted = False
        # The problem names the pattern and how to fix it.
        [p] = e.problems
        assert repr(pattern) in p.message and "RE2" in p.message and p.fix, str(e)
    assert accepted == expected, f"amtool {'accepts' if expected else 'rejects'} {pattern!r}"


@pytest.mark.parametrize("pattern", ["(?=a)", r"(a)\1", "(?<n>a)", r"\Z", "a++"])
def test_a_silence_with_a_pattern_re2_rejects_is_refused_naming_it(pattern: str) -> None:
    with pytest.raises(SilenceError) as e:
        silence_from_api({"matchers": [{"name": "node", "value": pattern, "isRegex": True}], "startsAt": 0,
                          "endsAt": 1, "createdBy": "a", "comment": "c"}, id="s")
    [p] = e.value.problems
    assert p.path == "matchers[0].value" and repr(pattern) in p.message and p.fix


# -- what a pattern matches: as amtool's `config routes test` says ---------------------------------------------

MATCHING = [
    ("a)|(b", ["a", "ab", "xb", "xa"]),            # the anchors wrap the text, as Alertmanager's do
    (r"\d+", ["123", "\u0661\u0662\u0663"]),      # RE2's \d is ASCII; Python's also matches Arabic-Indic digits
    (r"\w+", ["abc", "\u00e9t\u00e9"]),
    ("[[:alpha:]]+", ["abc", "a1"]),              # POSIX classes (Python reads [[:alpha:] as a set)
    (r"qpu-\z", ["qpu-"]),                        # \z (Python's re before 3.14 rejects it)
    ("(?i)qpu-a", ["QPU-A", "qpu-b"]),
    ("qpu-.*", ["qpu-1", "xqpu-1", "qpu-\nx"]),
    ("(a+)+$", ["aaaa", "aab"]),                  # (the freeze input runs in a child process above)
]


@pytest.mark.parametrize(("pattern", "values"), MATCHING)
def test_a_pattern_matches_what_amtool_matches(pattern: str, values: list[str], tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    cfg = _config(tmp_path / "am.yml", f'x=~"{_quoted(pattern)}"')
    config = load_config(cfg)
    for value in values:
        done = subprocess.run([amtool, "config", "routes", "test", f"--config.file={cfg}", f"x={value}"],
                              capture_output=True, text=True, check=True)
        assert ",".join(routes_test(config, {"x": value})) == done.stdout.strip(), (pattern, value)
