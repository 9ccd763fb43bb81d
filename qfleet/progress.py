"""Progress bars for long commands: drawn by ``rich`` on a terminal, silent everywhere else.

``qfleet demo > log`` used to fill the log with hundreds of carriage-return redraws. A :class:`ProgressBar` on a
stream that is not a terminal draws nothing (the command's own summary lines say what happened), and on a
terminal rich redraws in place, throttled, with elapsed and remaining time. Text shown in the bar is never read
as rich markup and has control characters made visible (:func:`qfleet.text.for_terminal`): run keys and phase
names are data.
"""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from qfleet.text import for_terminal

__all__ = ["ProgressBar"]


class ProgressBar:
    """One or more progress tasks on ``stream``; a no-op when ``stream`` is not a terminal.

    Args:
        stream: where to draw (usually stderr).
        force: draw (``True``) or stay silent (``False``) whatever ``stream`` is; by default, draw only
            on a terminal.

    Examples:
        >>> import io
        >>> out = io.StringIO()
        >>> with ProgressBar(out) as bar:
        ...     bar.start("simulating", total=10)
        ...     bar.update(5, info="[red]5 jobs")
        >>> out.getvalue(), bar.active
        ('', False)
    """

    def __init__(self, stream: TextIO, *, force: bool | None = None) -> None:
        draw = stream.isatty() if force is None else force
        self.active = draw
        self._task: TaskID | None = None
        self._progress: Progress | None = None
        if draw:
            console = Console(file=stream, force_terminal=True if force else None, highlight=False)
            self._progress = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
                console=console, refresh_per_second=5, transient=False)
            self._progress.start()

    def start(self, description: str, *, total: float) -> None:
        """Begin a new task (a new line); the previous one stays shown as it ended."""
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(for_terminal(description), total=max(total, 1e-9), info="")

    def update(self, completed: float, *, info: str | None = None) -> None:
        """Set the current task's progress (in units of its ``total``) and its trailing text."""
        if self._progress is None or self._task is None:
            return
        if info is None:
            self._progress.update(self._task, completed=completed)
        else:
            self._progress.update(self._task, completed=completed, info=for_terminal(info))

    def close(self) -> None:
        """Draw the final state and release the terminal line (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.active = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
