"""Whole-file writes: a file is replaced all at once or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, keep_mode: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, flushed to disk and renamed
    over it: a killed process leaves the old file or the new one, never half of one.

    The file gets ``mode`` (default 0600: files that may hold secrets), or with ``keep_mode`` the permissions of
    the file it replaces, when there is one.
    """
    path = Path(path)
    if keep_mode and path.exists():
        mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
