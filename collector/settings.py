"""The one settings object of a qfleet process, built at the edge (the CLI) and passed down."""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_DATABASE_URL",
    "ENV_HOST",
    "ENV_TOKEN_FILE",
    "Settings",
    "SettingsError",
    "load_token",
]

#: Database URL, e.g. ``sqlite:///qfleet.db`` or ``postgresql+psycopg://user@127.0.0.1/qfleet``.
ENV_DATABASE_URL = "QFLEET_DATABASE_URL"
#: Address the network endpoints listen on (default 127.0.0.1).
ENV_HOST = "QFLEET_HOST"
#: File holding the bearer token of the ingestion and control endpoints.
ENV_TOKEN_FILE = "QFLEET_TOKEN_FILE"

DEFAULT_DATABASE_URL = "sqlite:///qfleet.db"
DEFAULT_TOKEN_FILE = Path("qfleet.token")


class SettingsError(ValueError):
    """A setting with a bad value; the message names it and says how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Process-wide settings.

    Args:
        database_url: SQLAlchemy URL of the store.
        host: listen address of network endpoints; loopback unless chosen otherwise.
        token_file: file with the bearer token (created with a random token if missing).

    Examples:
        >>> Settings.from_env({"QFLEET_DATABASE_URL": "sqlite:///x.db"}).database_url
        'sqlite:///x.db'
        >>> Settings.from_env({}, database_url="sqlite:///y.db").database_url
        'sqlite:///y.db'
    """

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    token_file: Path = DEFAULT_TOKEN_FILE

    def __post_init__(self) -> None:
        if "://" not in self.database_url:
            raise SettingsError(
                f"database URL {self.database_url!r} has no scheme; use sqlite:///PATH "
                "or postgresql+psycopg://USER@HOST:PORT/DB (flag --db or $QFLEET_DATABASE_URL)"
            )
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            if self.host != "localhost":
                raise SettingsError(
                    f"listen address {self.host!r} is not an IP address; use 127.0.0.1 "
                    "(the default) or another address of this machine"
                ) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: object) -> Settings:
        """Settings from ``environ`` (``QFLEET_*``), then non-``None`` ``overrides`` (flags)."""
        s = cls()
        env = {
            "database_url": environ.get(ENV_DATABASE_URL),
            "host": environ.get(ENV_HOST),
            "token_file": environ.get(ENV_TOKEN_FILE),
        }
        for source in (env, overrides):
            for k, v in source.items():
                if v is not None and v != "":
                    field: dict[str, Any] = {k: Path(str(v)) if k == "token_file" else v}
                    s = replace(s, **field)  # each value is validated as it is applied
        return s


def load_token(path: Path, *, create: bool = True) -> str:
    """The bearer token stored in ``path``; creates it (mode 0600, random) when missing.

    Raises:
        SettingsError: the file is missing (and ``create`` is false), cannot be created or read (its directory
            is missing, a permission), empty, or readable by other users.
    """
    if not path.exists():
        if not create:
            raise SettingsError(f"token file {str(path)!r} does not exist; create it or omit --token-file")
        _create_token(path)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SettingsError(
                f"token file {str(path)!r} is readable by other users (mode {oct(mode & 0o777)}); "
                f"run: chmod 600 {path}"
            )
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"token file {str(path)!r} cannot be read ({_reason(err)}); "
                            "fix its permissions or pass another --token-file") from None
    if not token:
        raise SettingsError(f"token file {str(path)!r} is empty; put a token in it or delete it to get a new one")
    return token


def _reason(err: Exception) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__


def _create_token(path: Path) -> None:
    """A new random token in ``path``, mode 0600 from the start; no half-written file is left behind."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise SettingsError(f"token file {str(path)!r} cannot be created ({_reason(err)}); create its directory "
                            "(mkdir -p) or pass another --token-file") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    except OSError as err:
        path.unlink(missing_ok=True)
        raise SettingsError(f"token file {str(path)!r} cannot be written ({_reason(err)}); "
                            "free some space or pass another --token-file") from None
