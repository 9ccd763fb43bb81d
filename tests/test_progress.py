"""Progress bars: drawn on a terminal (a real pseudo-terminal here), silent in a log file or a pipe.

The oracle is the bytes the terminal or the pipe received: no carriage-return redraws in a pipe (``qfleet demo >
log`` used to write hundreds), and on a terminal the bar shows its text literally (not as rich markup) and with
control characters made visible.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qfleet.progress import ProgressBar


def _pty_output(draw: object) -> str:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", encoding="utf-8", closefd=False) as stream:
            draw(stream)  # type: ignore[operator]
            stream.flush()
        os.set_blocking(master, False)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(master)
        os.close(slave)


def test_on_a_terminal_the_bar_is_drawn_with_its_text_literal() -> None:
    def draw(stream: object) -> None:
        with ProgressBar(stream) as bar:  # type: ignore[arg-type]
            assert bar.active
            bar.start("phase [bold]one[/bold]", total=4)
            bar.update(4, info="run\x1b[31mred")

    shown = _pty_output(draw)
    assert "phase [bold]one[/bold]" in shown  # markup in data is shown, not applied
    assert "run\\x1b[31mred" in shown  # the escape sequence is made visible, never sent raw
    assert "100%" in shown


def test_in_a_pipe_a_simulation_writes_no_redraws(tmp_path: Path) -> None:
    env = {**os.environ, "QFLEET_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    r = subprocess.run([sys.executable, "-m", "qfleet.cli", "sim", "run", "--fleet", "line", "--duration", "3m"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\r" not in r.stdout
    assert r.stderr.strip() == ""  # the summary is on stdout; the bar stays silent off a terminal
    assert "jobs" in r.stdout
